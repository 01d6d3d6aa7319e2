"""Volunteer: the red-vest registry, task matching and walk, hours, and special-care visits
(FastAPI app + lifespan). Wiring only."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from fastapi import FastAPI

from services.volunteer import api
from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.places import Places
from services.volunteer.handlers import subscriptions
from services.volunteer.metrics import GaugeRefresher, VolunteerMetrics
from services.volunteer.service import VolunteerService
from services.volunteer.store import INDEXES, VolunteerStore
from tongxin.runtime.openapi import serve_docs
from tongxin.runtime.scheduler import BatchScheduler
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app

log = logging.getLogger(__name__)


def create_app(settings: VolunteerSettings | None = None) -> FastAPI:
    """Build volunteer's app; clients are created when the lifespan starts."""
    settings = settings or VolunteerSettings()
    seed_dir = settings.seed_dir
    # read before anything connects: a broken seed file stops the start-up
    places = Places.from_seed(json.loads((seed_dir / "communities.json").read_text("utf-8")))
    seed = json.loads((seed_dir / "volunteers.json").read_text("utf-8"))
    recipients_file = seed_dir / "care_recipients.json"
    recipients = (
        json.loads(recipients_file.read_text("utf-8")).get("recipients", [])
        if recipients_file.exists()
        else []
    )
    holder: dict[str, VolunteerMetrics] = {}

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        metrics = holder["metrics"]
        service = VolunteerService(rt, VolunteerStore(rt.db), settings, places, metrics)
        await service.prepare()
        added = await service.seed(seed, recipients)
        log.info("volunteer seed loaded", extra={"added": added})
        rt.extra["ctx"] = api.VolunteerContext(rt, settings, service)
        scheduler = BatchScheduler(
            rt.db,
            rt.uow,
            service.on_deadlines,
            lease=timedelta(seconds=settings.deadline_lease_s),
            tick=settings.deadline_tick_s,
        )
        rt.run_in_background("deadlines", scheduler.run, scheduler.stop)
        gauges = GaugeRefresher(service.gauges, metrics, settings.gauge_refresh_s)
        rt.run_in_background("gauges", gauges.run, gauges.stop)
        return subscriptions(service)

    app = create_service_app(
        name="volunteer",
        title="Tongxin volunteer 红马甲",
        settings=settings,
        routers=[api.router, api.care_router],
        indexes=INDEXES,
        setup=setup,
    )
    serve_docs(app)  # /docs and /redoc with their assets served here, not from a CDN
    holder["metrics"] = VolunteerMetrics(app.state.metrics.registry)
    return app
