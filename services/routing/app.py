"""Routing: tiers, units, deadlines, escalation, meetings, KPIs (FastAPI app + lifespan)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.routing import api
from services.routing.config import RoutingSettings
from services.routing.domain.classify import checked
from services.routing.domain.policy import Policy
from services.routing.domain.units import UnitRegistry
from services.routing.handlers import subscriptions
from services.routing.metrics import GaugeRefresher, RoutingMetrics
from services.routing.service import RoutingService
from services.routing.store import INDEXES, CaseStore
from tongxin.runtime.openapi import serve_docs
from tongxin.runtime.scheduler import BatchScheduler
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def load_policy(settings: RoutingSettings) -> Policy:
    """The policy file, scaled by TONGXIN_DEADLINE_SCALE; each rule it names must exist."""
    return checked(Policy.load(settings.policy_path()).scaled(settings.deadline_scale))


def load_units(settings: RoutingSettings) -> UnitRegistry:
    """Units (routing's seed) plus communities and their stations (intake's seed)."""
    units = settings.seed_dir / "units.json"
    communities = settings.seed_dir / "communities.json"
    return UnitRegistry.from_seed(
        _read_json(units) if units.is_file() else {},
        _read_json(communities) if communities.is_file() else {},
    )


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    """Build routing's app; clients are created when the lifespan starts."""
    settings = settings or RoutingSettings()
    # read (and validated) before anything connects: a bad policy stops the start-up
    policy = load_policy(settings)
    units = load_units(settings)

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        store = CaseStore(rt.db)
        metrics = RoutingMetrics(rt.metrics.registry, units.units)
        service = RoutingService(rt, store, policy, metrics)
        await service.prepare()
        rt.extra["ctx"] = api.RoutingContext(rt, settings, store, policy, units, service)
        scheduler = BatchScheduler(
            rt.db,
            rt.uow,
            service.on_deadlines,
            lease=timedelta(seconds=settings.routing_deadline_lease_s),
            tick=settings.routing_deadline_tick_s,
        )
        rt.run_in_background("deadlines", scheduler.run, scheduler.stop)
        gauges = GaugeRefresher(
            store,
            metrics,
            timedelta(days=settings.routing_kpi_window_days),
            settings.routing_gauge_refresh_s,
        )
        rt.run_in_background("gauges", gauges.run, gauges.stop)
        return subscriptions(service)

    app = create_service_app(
        name="routing",
        title="Tongxin routing 分级派单",
        settings=settings,
        routers=[api.public_router, api.router],
        indexes=INDEXES,
        setup=setup,
    )
    serve_docs(app)  # /docs and /redoc with their assets served here, not from a CDN
    return app
