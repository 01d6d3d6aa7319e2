"""The joint meeting 联席会议 (大家一起议): its calendar and its agenda — pure rules.

A meeting's id is its local date, ``M-YYYY-MM-DD``. The agenda holds the deliberation
items (public affairs of a compound) not yet decided, and the escalated cases still
unresolved.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from services.routing.domain.lifecycle import OPEN_STATES, Case
from services.routing.domain.policy import MeetingSchedule

_ID = re.compile(r"^M-(\d{4})-(\d{2})-(\d{2})$")


def _tz(s: MeetingSchedule) -> timezone:
    return timezone(timedelta(minutes=s.utc_offset_minutes))


def _at(s: MeetingSchedule, d: date) -> datetime:
    return datetime(d.year, d.month, d.day, s.hour, s.minute, tzinfo=_tz(s)).astimezone(UTC)


def _monthly_date(s: MeetingSchedule, year: int, month: int) -> date:
    return date(year, month, min(s.day, calendar.monthrange(year, month)[1]))


def next_meeting(s: MeetingSchedule, now: datetime) -> tuple[str, datetime]:
    """The id and start (UTC) of the first meeting that has not started at ``now``."""
    local = now.astimezone(_tz(s)).date()
    if s.cadence == "weekly":
        d = local + timedelta(days=(s.day - local.weekday()) % 7)
        if _at(s, d) <= now:
            d += timedelta(days=7)
    else:
        d = _monthly_date(s, local.year, local.month)
        if _at(s, d) <= now:
            y, m = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
            d = _monthly_date(s, y, m)
    return meeting_id(d), _at(s, d)


def meeting_id(d: date) -> str:
    """``M-2025-07-25``."""
    return f"M-{d:%Y-%m-%d}"


def meeting_date(s: MeetingSchedule, mid: str) -> date | None:
    """The date of a meeting id, or None when no meeting sits on that day."""
    m = _ID.match(mid)
    if not m:
        return None
    try:
        d = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    if s.cadence == "weekly":
        return d if d.weekday() == s.day else None
    return d if d == _monthly_date(s, d.year, d.month) else None


def agenda_reason(case: Case) -> str | None:
    """Why a case is on the agenda ("deliberation" or "escalated"), or None."""
    if case.status not in OPEN_STATES:
        return None
    if case.deliberation and case.meeting_decision is None:
        return "deliberation"
    if case.level != "community":
        return "escalated"
    return None


def agenda(cases: Iterable[Case]) -> list[dict[str, Any]]:
    """The agenda items: deliberation first, then escalated cases, oldest first."""
    items = []
    for c in cases:
        why = agenda_reason(c)
        if why is None:
            continue
        items.append(
            {
                "case_id": c.id,
                "request_id": c.request_id,
                "item": why,
                "category": c.category.value,
                "community": c.community,
                "compound": c.compound,
                "tier": c.tier.value,
                "status": c.status.value,
                "level": c.level,
                "units": c.units,
                "opened_at": c.opened_at,
            }
        )
    items.sort(key=lambda i: (i["item"] != "deliberation", i["opened_at"]))
    return items
