"""Routing's Prometheus metrics, registered on the service's registry (``tongxin_`` prefix).

Label values are bounded: tiers, escalation levels, and unit ids from the registry (any
other unit id is reported as ``other``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.routing.domain.kpis import unit_stats
from services.routing.store import CaseStore

log = logging.getLogger(__name__)

RATES = ("response_rate", "resolution_rate", "satisfaction_rate", "whistle_rate")


class RoutingMetrics:
    """Cases, deadlines and unit KPIs."""

    def __init__(self, registry: CollectorRegistry, known_units: Collection[str]) -> None:
        self.known_units = set(known_units)
        self.routed = Counter(
            "tongxin_routing_cases_routed_total",
            "Cases routed (revision 0) or dispatched again, by tier and rule",
            ["tier", "rule"],
            registry=registry,
        )
        self.open_cases = Gauge(
            "tongxin_routing_open_cases",
            "Open cases by tier and assigned unit (refreshed periodically)",
            ["tier", "unit"],
            registry=registry,
        )
        self.breaches = Counter(
            "tongxin_routing_deadline_breaches_total",
            "Missed deadlines by tier and level (community/town/county: acknowledge; resolve)",
            ["tier", "level"],
            registry=registry,
        )
        self.escalations = Counter(
            "tongxin_routing_escalations_total",
            "Cases escalated, by target level (department = whistle)",
            ["to_level", "trigger"],
            registry=registry,
        )
        self.report_in = Histogram(
            "tongxin_routing_report_in_seconds",
            "Time from assignment to acknowledgment (report-in), by tier",
            ["tier"],
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, float("inf")),
            registry=registry,
        )
        self.transitions = Counter(
            "tongxin_routing_case_events_total",
            "case.* events emitted, by type",
            ["type"],
            registry=registry,
        )
        self.kpi = {
            rate: Gauge(
                f"tongxin_routing_unit_{rate}",
                f"Unit KPI {rate.replace('_', ' ')} over the KPI window (unit=all: overall)",
                ["unit"],
                registry=registry,
            )
            for rate in RATES
        }

    def unit_label(self, unit: str) -> str:
        """A bounded label value for a unit id."""
        return unit if unit in self.known_units else "other"

    def set_kpis(self, stats: dict[str, Any]) -> None:
        """Publish the rates of :func:`unit_stats` as gauges (missing rates are not set)."""
        rows = [("all", stats["overall"])] + [
            (self.unit_label(u), r) for u, r in stats["units"].items()
        ]
        for g in self.kpi.values():
            g.clear()
        for unit, r in rows:
            for rate, g in self.kpi.items():
                if r[rate] is not None:
                    g.labels(unit).set(r[rate])

    def set_open(self, counts: dict[tuple[str, str], int]) -> None:
        """Replace the open-cases gauge."""
        self.open_cases.clear()
        merged: dict[tuple[str, str], int] = {}
        for (tier, unit), n in counts.items():
            key = (tier, self.unit_label(unit))
            merged[key] = merged.get(key, 0) + n
        for (tier, unit), n in merged.items():
            self.open_cases.labels(tier, unit).set(n)


class GaugeRefresher:
    """Recomputes the open-case and KPI gauges every ``interval`` seconds."""

    def __init__(
        self,
        store: CaseStore,
        metrics: RoutingMetrics,
        window: timedelta,
        interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.window = window
        self.interval = interval
        self.clock = clock
        self._stop = asyncio.Event()

    async def refresh(self) -> None:
        """One pass."""
        now = self.clock()
        self.metrics.set_open(await self.store.open_counts())
        cases = await self.store.opened_between(now - self.window, None)
        self.metrics.set_kpis(unit_stats(cases, now))

    async def run(self) -> None:
        """Refresh until ``stop()``."""
        while not self._stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # database down: keep the last values, try again
                log.warning("gauge refresh failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Ask ``run()`` to return."""
        self._stop.set()
