"""Routing: tiers, units, deadlines (FastAPI app + lifespan)."""

from __future__ import annotations

from fastapi import FastAPI

from services.routing import api
from services.routing.config import RoutingSettings
from services.routing.domain.policy import Policy
from services.routing.handlers import IntakeEventHandlers
from services.routing.store import INDEXES, CaseStore
from tongxin.contracts.events import RequestSubmitted
from tongxin.contracts.topics import REQUESTS
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    """Build routing's app; clients are created when the lifespan starts."""
    settings = settings or RoutingSettings()

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        store = CaseStore(rt.db)
        policy = Policy().scaled(settings.deadline_scale)
        rt.extra["ctx"] = api.RoutingContext(rt, settings, store, policy)
        handlers = IntakeEventHandlers(rt, store, policy)
        return [
            Subscription(
                "requests",
                [REQUESTS.name],
                {RequestSubmitted.ce_type(): handlers.on_request_submitted},
            )
        ]

    return create_service_app(
        name="routing",
        title="Tongxin routing 分级派单",
        settings=settings,
        routers=[api.router],
        indexes=INDEXES,
        setup=setup,
    )
