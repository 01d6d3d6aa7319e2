"""Volunteer: the red-vest registry and task matching (FastAPI app + lifespan)."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI

from services.volunteer import api
from services.volunteer.config import VolunteerSettings
from services.volunteer.handlers import CaseEventHandlers
from services.volunteer.store import INDEXES, VolunteerStore
from tongxin.contracts.events import CaseRouted
from tongxin.contracts.topics import CASES
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app

log = logging.getLogger(__name__)


def create_app(settings: VolunteerSettings | None = None) -> FastAPI:
    """Build volunteer's app; clients are created when the lifespan starts."""
    settings = settings or VolunteerSettings()

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        store = VolunteerStore(rt.db)
        raw = json.loads((settings.seed_dir / "volunteers.json").read_text(encoding="utf-8"))
        added = await store.seed(raw["volunteers"])
        log.info("volunteer seed loaded", extra={"added": added})
        rt.extra["ctx"] = api.VolunteerContext(rt, settings, store)
        handlers = CaseEventHandlers(rt, store, settings.accept_window)
        return [
            Subscription("cases", [CASES.name], {CaseRouted.ce_type(): handlers.on_case_routed})
        ]

    return create_service_app(
        name="volunteer",
        title="Tongxin volunteer 红马甲",
        settings=settings,
        routers=[api.router],
        indexes=INDEXES,
        setup=setup,
    )
