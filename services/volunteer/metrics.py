"""Volunteer's own Prometheus metrics, on the service's injected registry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TASK_OUTCOMES = (
    "offered",
    "accepted",
    "declined",
    "expired",
    "completed",
    "unmatched",
    "cancelled",
)
log = logging.getLogger(__name__)

VISIT_OUTCOMES = ("generated", "completed", "completed_late", "overdue", "cancelled")


class VolunteerMetrics:
    """Tasks by outcome, match latency, utilisation, care visits (bounded labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks = Counter(
            "tongxin_volunteer_tasks_total",
            "Volunteer task transitions by outcome",
            ["outcome"],
            registry=registry,
        )
        self.match_seconds = Histogram(
            "tongxin_volunteer_match_seconds",
            "Time to load candidates and rank them for one offer",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.utilisation = Gauge(
            "tongxin_volunteer_utilisation_ratio",
            "Open tasks over the total task capacity of active volunteers",
            registry=registry,
        )
        self.active = Gauge(
            "tongxin_volunteer_active_volunteers",
            "Active registered volunteers",
            registry=registry,
        )
        self.open_tasks = Gauge(
            "tongxin_volunteer_open_tasks",
            "Tasks offered or accepted and not yet completed",
            registry=registry,
        )
        self.visits = Counter(
            "tongxin_care_visits_total",
            "Care visit transitions by outcome",
            ["outcome"],
            registry=registry,
        )
        self.overdue = Gauge(
            "tongxin_care_visits_overdue",
            "Care visits currently overdue (missed and not yet made)",
            registry=registry,
        )
        self.hours = Counter(
            "tongxin_volunteer_hours_total",
            "Hours of volunteer service recorded",
            ["kind"],
            registry=registry,
        )
        for o in TASK_OUTCOMES:
            self.tasks.labels(o)
        for o in VISIT_OUTCOMES:
            self.visits.labels(o)


Gauges = Callable[[], Awaitable[tuple[int, int, int, int]]]


class GaugeRefresher:
    """Refreshes the utilisation and overdue gauges from the database now and then."""

    def __init__(self, read: Gauges, metrics: VolunteerMetrics, every: float) -> None:
        self.read = read  # (active volunteers, open tasks, capacity, overdue visits)
        self.metrics = metrics
        self.every = every
        self._stop = asyncio.Event()

    async def refresh(self) -> None:
        """One refresh."""
        active, open_tasks, capacity, overdue = await self.read()
        self.metrics.active.set(active)
        self.metrics.open_tasks.set(open_tasks)
        self.metrics.utilisation.set(open_tasks / capacity if capacity else 0.0)
        self.metrics.overdue.set(overdue)

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
