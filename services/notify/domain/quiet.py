"""Quiet hours: a daily window, in Asia/Shanghai, during which non-critical messages wait."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def parse_clock(value: str) -> time:
    """``"22:00"`` or ``"22:00:30"`` → a time; ValueError for anything else."""
    m = _CLOCK.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"not a clock time HH:MM[:SS]: {value!r}")
    return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window [start, end) in local time; it may wrap past midnight (22:00–07:00)."""

    start: time
    end: time
    tz: ZoneInfo = SHANGHAI

    @classmethod
    def parse(cls, start: str, end: str) -> QuietHours:
        """Validate a window; start and end must differ."""
        s, e = parse_clock(start), parse_clock(end)
        if s == e:
            raise ValueError("quiet hours start and end must differ")
        return cls(s, e)

    def as_dict(self) -> dict[str, str]:
        """The window as stored and shown (``HH:MM`` or ``HH:MM:SS``)."""
        return {"start": _fmt(self.start), "end": _fmt(self.end)}

    def _local(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.astimezone(self.tz)

    def contains(self, now: datetime) -> bool:
        """Whether ``now`` falls inside the window."""
        t = self._local(now).time().replace(microsecond=0, tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def ends_after(self, now: datetime) -> datetime | None:
        """When the window containing ``now`` ends (aware, local tz); None if not quiet now."""
        if not self.contains(now):
            return None
        local = self._local(now)
        end = local.replace(
            hour=self.end.hour, minute=self.end.minute, second=self.end.second, microsecond=0
        )
        if end <= local:
            end = _add_local_day(end)
        return end


def _add_local_day(dt: datetime) -> datetime:
    """The same wall-clock time on the next day (Asia/Shanghai has no DST, but stay correct)."""
    nxt = (dt.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=dt.tzinfo)
    return nxt


def _fmt(t: time) -> str:
    return t.strftime("%H:%M:%S") if t.second else t.strftime("%H:%M")
