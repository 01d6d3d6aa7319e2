"""Intake: the front door for requests (FastAPI app + lifespan)."""

from __future__ import annotations

import json

from fastapi import FastAPI

from services.intake import api
from services.intake.config import IntakeSettings
from services.intake.domain.registry import Registry
from services.intake.handlers import TimelineHandlers
from services.intake.store import INDEXES, RequestStore
from tongxin.contracts.events import CaseRouted
from tongxin.contracts.topics import CASES
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    """Build intake's app; clients are created when the lifespan starts."""
    settings = settings or IntakeSettings()

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        raw = json.loads((settings.seed_dir / "communities.json").read_text(encoding="utf-8"))
        store = RequestStore(rt.db)
        rt.extra["ctx"] = api.IntakeContext(rt, settings, store, Registry.from_seed(raw))
        timeline = TimelineHandlers(rt, store)
        return [
            Subscription("timeline", [CASES.name], {CaseRouted.ce_type(): timeline.on_case_routed})
        ]

    return create_service_app(
        name="intake",
        title="Tongxin intake 诉求受理",
        settings=settings,
        routers=[api.router],
        indexes=INDEXES,
        setup=setup,
    )
