"""Quiet hours in Asia/Shanghai: parsing, membership, when the window ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.domain.quiet import SHANGHAI, QuietHours, parse_clock


def sh(h: int, m: int = 0, day: int = 1) -> datetime:
    return datetime(2025, 5, day, h, m, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    "bad", ["24:00", "7:00", "07:60", "07", "", "ab:cd", "07:00:61", " 22:00x"]
)
def test_malformed_clock_times_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_clock(bad)


def test_a_window_must_have_a_length() -> None:
    with pytest.raises(ValueError):
        QuietHours.parse("22:00", "22:00")


def test_overnight_window_wraps_midnight() -> None:
    q = QuietHours.parse("22:00", "07:00")
    assert q.contains(sh(23)) and q.contains(sh(3)) and q.contains(sh(22))
    assert not q.contains(sh(7)) and not q.contains(sh(12)) and not q.contains(sh(21, 59))
    assert q.ends_after(sh(23)) == sh(7, day=2)
    assert q.ends_after(sh(3)) == sh(7, day=1)
    assert q.ends_after(sh(12)) is None


def test_daytime_window_and_utc_input() -> None:
    q = QuietHours.parse("12:00", "14:30")
    noon_utc = datetime(2025, 5, 1, 4, 30, tzinfo=UTC)  # 12:30 in Shanghai
    assert q.contains(noon_utc)
    assert q.ends_after(noon_utc) == sh(14, 30)
    assert not q.contains(datetime(2025, 5, 1, 12, 30, tzinfo=UTC))  # 20:30 in Shanghai


def test_seconds_are_allowed_and_shown() -> None:
    q = QuietHours.parse("22:00", "07:00:30")
    assert q.as_dict() == {"start": "22:00", "end": "07:00:30"}


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        QuietHours.parse("22:00", "07:00").contains(datetime(2025, 5, 1, 23))


clock = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda t: f"{t[0]:02d}:{t[1]:02d}")


@given(clock, clock, st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)))
def test_the_window_ends_within_a_day_and_then_it_is_not_quiet(
    start: str, end: str, moment: datetime
) -> None:
    if start == end:
        return
    q = QuietHours.parse(start, end)
    now = moment.replace(tzinfo=UTC)
    ends = q.ends_after(now)
    if ends is None:
        assert not q.contains(now)
        return
    assert now < ends <= now + timedelta(days=1)
    assert not q.contains(ends)
    assert ends.astimezone(SHANGHAI).strftime("%H:%M") == end
