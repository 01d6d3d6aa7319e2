"""Volunteer: the red-vest registry, task matching and walk, hours, and special-care visits
(FastAPI app + lifespan)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

from fastapi import FastAPI

from services.volunteer import api
from services.volunteer.care import CARE_GENERATE, CARE_OVERDUE, CareVisits
from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.places import Places
from services.volunteer.handlers import CaseEventHandlers
from services.volunteer.metrics import VolunteerMetrics
from services.volunteer.store import INDEXES, VolunteerStore
from services.volunteer.walk import OFFER_EXPIRY, TaskWalk
from tongxin.contracts.events import CaseClosed, CaseResolved, CaseRouted
from tongxin.contracts.topics import CASES
from tongxin.runtime.scheduler import DeadlineScheduler, DeadlineStore
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app

log = logging.getLogger(__name__)


class GaugeRefresher:
    """Refreshes the utilisation and overdue gauges from the database now and then."""

    def __init__(self, store: VolunteerStore, metrics: VolunteerMetrics, every: float) -> None:
        self.store = store
        self.metrics = metrics
        self.every = every
        self._stop = asyncio.Event()

    async def refresh(self) -> None:
        """One refresh."""
        active, open_tasks, capacity = await self.store.utilisation()
        self.metrics.active.set(active)
        self.metrics.open_tasks.set(open_tasks)
        self.metrics.utilisation.set(open_tasks / capacity if capacity else 0.0)
        self.metrics.overdue.set(await self.store.count_overdue())

    async def run(self) -> None:
        """Refresh until stopped; a database hiccup is logged and retried."""
        while not self._stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("gauge refresh failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(self._stop.wait(), self.every)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Ask ``run()`` to return."""
        self._stop.set()


def create_app(settings: VolunteerSettings | None = None) -> FastAPI:
    """Build volunteer's app; clients are created when the lifespan starts."""
    settings = settings or VolunteerSettings()
    seed_dir = settings.seed_dir
    places = Places.from_seed(json.loads((seed_dir / "communities.json").read_text("utf-8")))
    holder: dict[str, VolunteerMetrics] = {}

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        metrics = holder["metrics"]
        store = VolunteerStore(rt.db)
        walk = TaskWalk(rt, store, settings, places, metrics)
        care = CareVisits(rt, store, settings, metrics)
        added = await store.seed(json.loads((seed_dir / "volunteers.json").read_text("utf-8")))
        recipients_file = seed_dir / "care_recipients.json"
        if recipients_file.exists():
            raw = json.loads(recipients_file.read_text("utf-8"))
            added += await care.seed(raw.get("recipients", []))
        log.info("volunteer seed loaded", extra={"added": added})
        rt.extra["ctx"] = api.VolunteerContext(rt, settings, store, places, walk, care)
        scheduler = DeadlineScheduler(
            DeadlineStore(rt.db),
            {
                OFFER_EXPIRY: walk.expire,
                CARE_GENERATE: care.on_generate,
                CARE_OVERDUE: care.on_overdue,
            },
            lease=timedelta(seconds=settings.deadline_lease_s),
            tick=settings.deadline_tick_s,
        )
        rt.run_in_background("deadlines", scheduler.run, scheduler.stop)
        gauges = GaugeRefresher(store, metrics, settings.gauge_refresh_s)
        rt.run_in_background("gauges", gauges.run, gauges.stop)
        handlers = CaseEventHandlers(walk)
        return [
            Subscription(
                "cases",
                [CASES.name],
                {
                    CaseRouted.ce_type(): handlers.on_case_routed,
                    CaseResolved.ce_type(): handlers.on_case_resolved,
                    CaseClosed.ce_type(): handlers.on_case_closed,
                },
            )
        ]

    app = create_service_app(
        name="volunteer",
        title="Tongxin volunteer 红马甲",
        settings=settings,
        routers=[api.router, api.care_router],
        indexes=INDEXES,
        setup=setup,
    )
    holder["metrics"] = VolunteerMetrics(app.state.metrics.registry)
    return app
