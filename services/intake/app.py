"""Intake: the front door for requests (FastAPI app + lifespan)."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI

from services.intake import api, open311
from services.intake.config import IntakeSettings
from services.intake.domain.registry import Registry, collect_names
from services.intake.handlers import subscriptions
from services.intake.limits import BodyLimitMiddleware, TokenBucketLimiter
from services.intake.metrics import IntakeMetrics
from services.intake.service import IntakeService
from services.intake.store import INDEXES, RequestStore
from tongxin import accounts, console, resident, volunteer_page
from tongxin.accounts.handlers import subscriptions as account_subscriptions
from tongxin.contracts.enums import Category
from tongxin.runtime.openapi import serve_docs
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 600.0


def _unit_names(settings: IntakeSettings, communities: dict[str, object]) -> dict[str, str]:
    """Unit ids → names from the seed files (communities, stations, departments, town)."""
    names = collect_names(communities)
    units = settings.seed_dir / "units.json"
    if units.exists():
        collect_names(json.loads(units.read_text(encoding="utf-8")), names)
    return names


def _departments(settings: IntakeSettings, names: dict[str, str]) -> dict[Category, str]:
    """Category → the name of the alliance department the routing policy sends it to (the
    policy file is the one place of that fact; routing decides with it)."""
    policy = json.loads(settings.policy_path().read_text(encoding="utf-8"))
    return {Category(c): names.get(u, u) for c, u in policy["department_of"].items()}


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    """Build intake's app; clients are created when the lifespan starts."""
    settings = settings or IntakeSettings()
    metrics_box: list[IntakeMetrics] = []

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        raw = json.loads((settings.seed_dir / "communities.json").read_text(encoding="utf-8"))
        if not metrics_box:  # one registry per app, however often the lifespan runs
            metrics_box.append(IntakeMetrics(rt.metrics.registry))
        store = RequestStore(rt.db)
        registry = Registry.from_seed(raw)
        names = _unit_names(settings, raw)
        service = IntakeService(
            rt, settings, store, registry, metrics_box[0], names, _departments(settings, names)
        )
        rt.extra["ctx"] = api.IntakeContext(rt, settings, store, registry, service)
        service.start_housekeeping(PURGE_INTERVAL_S)
        console.start(rt, settings.console_upstreams(), settings.console_upstream_timeout_s)
        account_service = accounts.start(rt, settings, frozenset(names))
        # the accounts follow the volunteer registry (a registered volunteer's account)
        return [*subscriptions(service), *account_subscriptions(account_service)]

    app = create_service_app(
        name="intake",
        title="Tongxin intake 诉求受理",
        settings=settings,
        routers=[
            api.router,
            open311.router,
            console.router,
            resident.router,
            volunteer_page.router,
            *accounts.routers,
        ],
        indexes=[*INDEXES, *accounts.INDEXES],
        setup=setup,
    )
    accounts.enable_sessions(app)  # the console's sign-in cookie authenticates here too
    serve_docs(app)  # /docs and /redoc with their assets served here, not from a CDN
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.intake_max_body_bytes)
    if settings.anonymous_limit_enabled:
        app.state.anonymous_limiter = TokenBucketLimiter(
            settings.intake_anonymous_per_minute, settings.intake_anonymous_burst
        )
    app.state.trust_forwarded_for = settings.intake_trust_forwarded_for
    return app
