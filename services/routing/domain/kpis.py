"""Unit KPIs — response, resolution, satisfaction and whistle rates (pure arithmetic).

Over a window [since, until) of cases opened in it, per unit and overall:

- **response rate**: acknowledgment obligations (a unit had to acknowledge or report in by
  a deadline) met in time / obligations decided (acknowledged, or the deadline passed).
- **resolution rate**: cases resolved in time / cases decided (resolved, or the resolve
  deadline passed) — counted for the accountable unit (首接单位).
- **satisfaction rate**: satisfied + basically satisfied / ratings — counted for the unit
  accountable when the rating was given.
- **whistle rate**: cases the unit took part in that were whistled (吹哨) / its cases.

A rate is ``None`` when its denominator is zero (nothing to judge yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.routing.domain.lifecycle import Case


@dataclass
class Tally:
    """Counts behind the rates of one unit (or overall)."""

    cases: int = 0
    ack_due: int = 0
    ack_in_time: int = 0
    resolve_due: int = 0
    resolved_in_time: int = 0
    ratings: int = 0
    satisfied: int = 0
    whistled: int = 0

    def rates(self) -> dict[str, Any]:
        """The tally with its four rates."""
        return {
            "cases": self.cases,
            "response_rate": _rate(self.ack_in_time, self.ack_due),
            "resolution_rate": _rate(self.resolved_in_time, self.resolve_due),
            "satisfaction_rate": _rate(self.satisfied, self.ratings),
            "whistle_rate": _rate(self.whistled, self.cases),
            "counts": {
                "acknowledge_due": self.ack_due,
                "acknowledged_in_time": self.ack_in_time,
                "resolve_due": self.resolve_due,
                "resolved_in_time": self.resolved_in_time,
                "ratings": self.ratings,
                "satisfied": self.satisfied,
                "whistled": self.whistled,
            },
        }


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def unit_stats(
    cases: Iterable[Case],
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """``{"units": {unit: rates}, "overall": rates}`` for cases opened in the window."""
    per: dict[str, Tally] = {}
    overall = Tally()

    def t(unit: str) -> Tally:
        return per.setdefault(unit, Tally())

    for case in cases:
        if since is not None and case.opened_at < since:
            continue
        if until is not None and case.opened_at >= until:
            continue
        overall.cases += 1
        overall.whistled += case.whistled
        involved = list(dict.fromkeys(a.unit for a in case.assignments))
        for unit in involved:
            t(unit).cases += 1
            t(unit).whistled += case.whistled
        for a in case.assignments:
            if a.acknowledge_by is None:
                continue
            if a.acknowledged_at is not None:
                met = a.acknowledged_at <= a.acknowledge_by
            elif a.breached or now > a.acknowledge_by:
                met = False
            else:
                continue  # still running: not decided yet
            for tally in (t(a.unit), overall):
                tally.ack_due += 1
                tally.ack_in_time += met
        if case.resolved_at is not None:
            decided, met = True, bool(case.resolved_in_time)
        elif case.close_reason == "withdrawn":
            decided, met = False, False  # a withdrawn request judges nobody
        elif case.overdue or now > case.resolve_by:
            decided, met = True, False
        else:
            decided, met = False, False  # still running
        if decided:
            for tally in (t(case.accountable_unit), overall):
                tally.resolve_due += 1
                tally.resolved_in_time += met
        for r in case.ratings:
            ok = r["rating"] in ("satisfied", "basically_satisfied")
            for tally in (t(str(r.get("unit") or case.accountable_unit)), overall):
                tally.ratings += 1
                tally.satisfied += ok
    return {
        "units": {u: tally.rates() for u, tally in sorted(per.items())},
        "overall": overall.rates(),
    }
