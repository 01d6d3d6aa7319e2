"""Availability windows, the task walk's rules, care cadence, places and request bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.availability import (
    LOCAL_TZ,
    Window,
    first_available,
    parse_activity_days,
    parse_hhmm,
)
from services.volunteer.domain.care import visit_deadline, visit_due, visit_id, visitor_for
from services.volunteer.domain.places import Places
from services.volunteer.domain.tasks import Action, check_action
from services.volunteer.schemas import (
    CareRecipientCreate,
    CompleteIn,
    VolunteerCreate,
    WindowIn,
)

MON_10 = datetime(2024, 5, 6, 10, 0, tzinfo=LOCAL_TZ)


# --- availability ----------------------------------------------------------------------------


def test_first_available_inside_now_later_today_next_week_or_never() -> None:
    mon = Window(0, 9 * 60, 12 * 60)
    assert first_available([mon], MON_10, MON_10 + timedelta(hours=1)) == MON_10
    evening = Window(0, 18 * 60, 20 * 60)
    assert first_available([evening], MON_10, MON_10 + timedelta(hours=12)) == MON_10.replace(
        hour=18
    )
    sunday = Window(6, 14 * 60, 18 * 60)
    assert first_available([sunday], MON_10, MON_10 + timedelta(days=7)) == datetime(
        2024, 5, 12, 14, 0, tzinfo=LOCAL_TZ
    )
    assert first_available([sunday], MON_10, MON_10 + timedelta(days=5)) is None
    assert first_available([], MON_10, MON_10 + timedelta(days=30)) is None


def test_first_available_keeps_the_callers_time_zone() -> None:
    start = MON_10.astimezone(UTC)
    at = first_available([Window(0, 0, 24 * 60)], start, start + timedelta(hours=1))
    assert at == start and at is not None and at.tzinfo == UTC


def test_window_end_of_day_and_bad_windows() -> None:
    assert parse_hhmm("24:00") == 1440
    for bad in ("25:00", "12:60", "1200", "ab:cd"):
        with pytest.raises(ValueError):
            parse_hhmm(bad)
    with pytest.raises(ValueError):
        Window(7, 0, 60)
    with pytest.raises(ValueError):
        Window(1, 600, 600)


def test_activity_days_setting() -> None:
    assert parse_activity_days("6@14:00-18:00, 1@09:00-11:30") == (
        Window(6, 840, 1080),
        Window(1, 540, 690),
    )
    assert VolunteerSettings().activity_windows == (Window(6, 840, 1080),)
    with pytest.raises(ValidationError):
        VolunteerSettings(activity_days="sunday afternoon")


def test_durations_are_scaled() -> None:
    s = VolunteerSettings(deadline_scale=0.001)
    assert s.accept_window == timedelta(seconds=1.8)
    assert s.care_cadence(7) == timedelta(seconds=7 * 86.4)
    assert s.care_visit_window == timedelta(seconds=172.8)


# --- task rules ------------------------------------------------------------------------------

NOW = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)


def check(
    action: Action,
    status: str = "offered",
    actor: str = "vol:1",
    staff: bool = False,
    accept_by: datetime | None = NOW + timedelta(minutes=5),
):  # type: ignore[no-untyped-def]
    return check_action(
        action,
        status=status,
        assignee="vol:1",
        actor=actor,
        actor_is_staff=staff,
        accept_by=accept_by,
        now=NOW,
    )


def test_the_offered_volunteer_may_accept_or_decline_in_time() -> None:
    assert check(Action.ACCEPT) is None
    assert check(Action.DECLINE) is None


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"action": Action.ACCEPT, "actor": "vol:2"}, 403, "not_your_task"),
        ({"action": Action.COMPLETE, "actor": "vol:2", "status": "accepted"}, 403, "not_your_task"),
        ({"action": Action.ACCEPT, "accept_by": NOW - timedelta(seconds=1)}, 409, "offer_expired"),
        ({"action": Action.DECLINE, "status": "accepted"}, 409, "task_not_offered"),
        ({"action": Action.ACCEPT, "status": "unmatched"}, 409, "task_not_offered"),
        ({"action": Action.COMPLETE}, 409, "task_not_accepted"),
        ({"action": Action.COMPLETE, "status": "completed"}, 409, "task_not_accepted"),
        ({"action": Action.ACCEPT, "actor": "staff:1", "staff": True}, 403, "forbidden"),
    ],
)
def test_refusals(kwargs: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    action = kwargs.pop("action")
    r = check(action, **kwargs)
    assert r is not None and (r.status, r.code) == (status, code)


def test_a_volunteer_whose_offer_ended_gets_a_conflict() -> None:
    r = check_action(
        Action.ACCEPT,
        status="offered",
        assignee="vol:2",
        actor="vol:1",
        actor_is_staff=False,
        accept_by=None,
        now=NOW,
        offered_before=True,
    )
    assert r is not None and (r.status, r.code) == (409, "offer_closed")


def test_staff_may_complete_on_a_volunteers_behalf() -> None:
    assert check(Action.COMPLETE, status="accepted", actor="staff:1", staff=True) is None


# --- care ------------------------------------------------------------------------------------


def test_visits_follow_the_cadence_and_rotate_visitors() -> None:
    first = NOW
    week = timedelta(days=7)
    assert [visit_due(first, week, k) for k in (1, 2, 3)] == [NOW, NOW + week, NOW + 2 * week]
    with pytest.raises(ValueError):
        visit_due(first, week, 0)
    assert [visitor_for(["a", "b"], k) for k in (1, 2, 3)] == ["a", "b", "a"]
    assert visitor_for([], 1) is None
    assert visit_deadline(NOW, timedelta(days=2), week) == NOW + timedelta(days=2)
    # the window never reaches past the next visit
    assert visit_deadline(NOW, timedelta(days=3), timedelta(days=1)) == NOW + timedelta(days=1)
    assert visit_id("care:001", 3) == "V-care-001-0003"


# --- places ----------------------------------------------------------------------------------

PLACES = Places.from_seed(
    {
        "communities": [
            {"id": "community:a", "compounds": [{"id": "compound:x", "lat": 26.7, "lng": 100.7}]},
            {"id": "community:b", "compounds": [{"id": "compound:y"}]},
        ],
        "bounds": {"min_lat": 26, "max_lat": 27, "min_lng": 100, "max_lng": 101},
    }
)


def test_places_validate_community_and_compound() -> None:
    assert PLACES.check("community:a", "compound:x") is None
    assert PLACES.check("community:a", None) is None
    assert PLACES.check("community:zz", None) == "community"
    assert PLACES.check("community:a", "compound:y") == "compound"  # in another community
    assert PLACES.check("community:a", "compound:nope") == "compound"
    assert PLACES.point("compound:x") == (26.7, 100.7)
    assert PLACES.within(26.5, 100.5) and not PLACES.within(30, 100.5)


# --- request bodies --------------------------------------------------------------------------


def test_bodies_refuse_bad_input() -> None:
    ok = {"name": "李", "skills": ["legal"], "community": "community:a"}
    assert VolunteerCreate.model_validate(ok).max_tasks == 3
    for bad in (
        {**ok, "skills": ["juggling"]},
        {**ok, "skills": []},
        {**ok, "skills": ["legal", "legal"]},
        {**ok, "phone": "12345"},
        {**ok, "max_tasks": 0},
        {**ok, "unexpected": 1},
        {**ok, "availability": [{"day": 1, "start": "20:00", "end": "18:00"}]},
        {**ok, "availability": [{"day": 9, "start": "08:00", "end": "18:00"}]},
    ):
        with pytest.raises(ValidationError):
            VolunteerCreate.model_validate(bad)
    assert WindowIn(day=6, start="14:00", end="24:00").to_window() == Window(6, 840, 1440)
    for hours in (0, -1, 24.5):
        with pytest.raises(ValidationError):
            CompleteIn(hours=hours)
    assert CompleteIn(hours=24).hours == 24
    care = {
        "name": "和奶奶",
        "care_type": "elderly_alone",
        "community": "community:a",
        "consent": True,
    }
    assert CareRecipientCreate.model_validate(care).cadence_days == 7
    for bad in (
        {**care, "consent": False},
        {**care, "care_type": "rich"},
        {**care, "cadence_days": 0},
        {**care, "assigned_volunteers": ["v", "v"]},
    ):
        with pytest.raises(ValidationError):
            CareRecipientCreate.model_validate(bad)
