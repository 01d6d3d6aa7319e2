"""Weekly availability windows and fixed activity days, in China Standard Time.

A volunteer declares windows like "Tuesday 18:00-21:00"; the brigade's fixed activity
days (volunteer service every Sunday afternoon by default) count for everyone. Matching
asks for the first instant inside a need's period when the volunteer is available.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# China has one time zone and no daylight saving; a fixed offset avoids a tzdata dependency.
LOCAL_TZ = timezone(timedelta(hours=8), "CST")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SEARCH_DAYS = 62


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly window: ``day`` 0 = Monday … 6 = Sunday, minutes since local midnight."""

    day: int
    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        if not 0 <= self.day <= 6:
            raise ValueError("day must be 0 (Monday) … 6 (Sunday)")
        if not 0 <= self.start_min < self.end_min <= 24 * 60:
            raise ValueError("a window needs 00:00 <= start < end <= 24:00")


def parse_hhmm(text: str) -> int:
    """``"18:30"`` → 1110 minutes; ``"24:00"`` is the end of the day."""
    hh, sep, mm = text.partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2:
        raise ValueError(f"not a HH:MM time: {text!r}")
    minutes = int(hh) * 60 + int(mm)
    if int(mm) >= 60 or minutes > 24 * 60:
        raise ValueError(f"not a time of day: {text!r}")
    return minutes


def format_hhmm(minutes: int) -> str:
    """1110 → ``"18:30"``."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_activity_days(spec: str) -> tuple[Window, ...]:
    """``"6@14:00-18:00,1@09:00-11:00"`` (day@start-end, comma separated) → windows."""
    out: list[Window] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        day, _, span = part.partition("@")
        start, _, end = span.partition("-")
        if not day.strip().isdigit():
            raise ValueError(f"not a day number: {part!r}")
        out.append(Window(int(day), parse_hhmm(start.strip()), parse_hhmm(end.strip())))
    return tuple(out)


def first_available(windows: Iterable[Window], start: datetime, end: datetime) -> datetime | None:
    """The earliest instant in ``[start, end]`` inside any window; None if there is none."""
    wins: Sequence[Window] = tuple(windows)
    if not wins or end < start:
        return None
    local_start = start.astimezone(LOCAL_TZ)
    local_end = end.astimezone(LOCAL_TZ)
    day0 = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
    best: datetime | None = None
    for offset in range(MAX_SEARCH_DAYS + 1):
        midnight = day0 + timedelta(days=offset)
        if midnight > local_end:
            break
        for w in wins:
            if w.day != midnight.weekday():
                continue
            w_start = midnight + timedelta(minutes=w.start_min)
            w_end = midnight + timedelta(minutes=w.end_min)
            if w_end <= local_start or w_start > local_end:
                continue
            candidate = max(w_start, local_start)
            if best is None or candidate < best:
                best = candidate
        if best is not None:
            break
    return None if best is None else best.astimezone(start.tzinfo)
