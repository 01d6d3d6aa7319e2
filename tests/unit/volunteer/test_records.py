"""The stored records and what they decide on themselves (no I/O): a task's walk, the
batch's candidate pool, volunteers and recipients round-tripping through documents, the
schedule of care visits, recording a visit, and where a volunteer lives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.volunteer.domain.availability import Window
from services.volunteer.domain.care import Recipient, Visit, VisitStatus
from services.volunteer.domain.matching import Candidate, MatchResult, Pool, match
from services.volunteer.domain.places import Places
from services.volunteer.domain.refusals import Conflict, Forbidden, Invalid, NotFound
from services.volunteer.domain.tasks import Action, Task, TaskStatus
from services.volunteer.domain.volunteers import Brigade, ServiceHours, Squad, Volunteer
from tongxin.contracts.enums import Skill
from tongxin.contracts.events import (
    TaskAccepted,
    TaskCompleted,
    TaskDeclined,
    TaskExpired,
    TaskOffered,
    TaskUnmatched,
)

NOW = datetime(2024, 5, 6, 2, 0, tzinfo=UTC)  # Monday 10:00 in China
WINDOW = timedelta(minutes=30)
ALWAYS = tuple(Window(d, 0, 24 * 60) for d in range(7))


def task(**kw: object) -> Task:
    base: dict[str, object] = {
        "id": "T-1",
        "case_id": "C-1",
        "request_id": "YS-1",
        "tier": "general",
        "category": "elderly_care",
        "skills": ["elder_care"],
        "community": "community:a",
        "compound": "compound:x",
        "lat": 26.7,
        "lng": 100.7,
        "need_start": NOW,
        "need_end": NOW + timedelta(days=7),
        "created_at": NOW,
        "updated_at": NOW,
    }
    return Task(**{**base, **kw})  # type: ignore[arg-type]


def cand(vid: str, **kw: object) -> Candidate:
    base: dict[str, object] = {
        "id": vid,
        "name": vid.upper(),
        "skills": frozenset({Skill.ELDER_CARE}),
        "community": "community:a",
        "compound": "compound:y",
        "lat": None,
        "lng": None,
        "max_tasks": 3,
        "windows": ALWAYS,
    }
    return Candidate(**{**base, **kw})  # type: ignore[arg-type]


def ranked(t: Task, *cands: Candidate) -> MatchResult:
    return match(cands, t.need(NOW))


# --- the task walk ---------------------------------------------------------------------------


def test_an_offer_then_a_decline_then_an_expiry_then_nobody_left() -> None:
    t = task()
    offered = t.offer_next(ranked(t, cand("v:a", compound="compound:x"), cand("v:b")), NOW, WINDOW)
    assert isinstance(offered, TaskOffered)
    assert (offered.volunteer_id, offered.attempt, offered.accept_by) == ("v:a", 1, NOW + WINDOW)
    assert t.status == TaskStatus.OFFERED and t.holder == "v:a" and t.tried == ["v:a"]
    assert t.offers[0]["ranking"][0]["volunteer_id"] == "v:a" and len(t.offers) == 1

    later = NOW + timedelta(minutes=5)
    declined = t.decline(later, "出差")
    assert isinstance(declined, TaskDeclined) and declined.reason == "出差"
    assert t.offer_outcomes == {"1": {"outcome": "declined", "at": later, "reason": "出差"}}
    # the decliner is never offered it again
    again = t.offer_next(ranked(t, cand("v:a", compound="compound:x"), cand("v:b")), later, WINDOW)
    assert isinstance(again, TaskOffered) and again.volunteer_id == "v:b" and again.attempt == 2
    assert t.offers[1]["excluded"] == {"already_tried": 1}

    expired = t.expire(later + WINDOW)
    assert isinstance(expired, TaskExpired) and expired.volunteer_id == "v:b"
    assert t.offer_outcomes["2"]["outcome"] == "expired"
    gone = t.offer_next(ranked(t, cand("v:a"), cand("v:b")), later + WINDOW, WINDOW)
    assert isinstance(gone, TaskUnmatched) and gone.tried == ["v:a", "v:b"]
    assert gone.reason == "every eligible volunteer declined or let the offer expire"
    assert t.status == TaskStatus.UNMATCHED and t.holder is None and t.attempt == 2
    assert t.volunteer_id is None and t.accept_by is None


def test_nobody_with_the_skill_is_unmatched_at_once() -> None:
    t = task(skills=["tutoring"])
    event = t.offer_next(ranked(t, cand("v:a")), NOW, WINDOW)
    assert isinstance(event, TaskUnmatched) and event.tried == []
    assert event.reason.startswith("no active volunteer with the skill")
    assert t.excluded == {"no_skill": 1} and t.attempt == 0


def test_accept_and_complete_and_who_may_answer() -> None:
    t = task()
    t.offer_next(ranked(t, cand("v:a")), NOW, WINDOW)
    refusal = t.refusal(Action.ACCEPT, "v:b", False, NOW)
    assert refusal is not None and isinstance(refusal.error(), Forbidden)
    assert refusal.error().code == "not_your_task"
    late = t.refusal(Action.ACCEPT, "v:a", False, NOW + WINDOW + timedelta(seconds=1))
    assert late is not None and isinstance(late.error(), Conflict)
    assert late.error().code == "offer_expired"
    assert t.refusal(Action.ACCEPT, "v:a", False, NOW) is None

    accepted = t.accept(NOW)
    assert isinstance(accepted, TaskAccepted) and t.status == TaskStatus.ACCEPTED
    assert t.holder == "v:a" and t.offer_outcomes["1"]["outcome"] == "accepted"
    assert t.refusal(Action.COMPLETE, "staff:1", True, NOW) is None  # staff may, for them
    done = t.complete(NOW, 2.5, "送餐", "v:a")
    assert isinstance(done, TaskCompleted) and (done.hours, done.note) == (2.5, "送餐")
    assert t.status == TaskStatus.COMPLETED and t.holder is None
    assert (t.hours, t.completed_by) == (2.5, "v:a")


def test_a_case_that_ended_cancels_a_pending_offer_only() -> None:
    offered = task()
    offered.offer_next(ranked(offered, cand("v:a")), NOW, WINDOW)
    assert offered.case_ended("closed", NOW) is True
    assert offered.status == TaskStatus.CANCELLED and offered.case_status == "closed"
    assert offered.offer_outcomes["1"]["outcome"] == "cancelled"
    assert offered.history[-1] == {"at": NOW, "event": "case.closed"}

    held = task()
    held.offer_next(ranked(held, cand("v:a")), NOW, WINDOW)
    held.accept(NOW)
    assert held.case_ended("resolved", NOW) is False
    assert held.status == TaskStatus.ACCEPTED and held.case_status == "resolved"


def test_a_task_round_trips_through_its_document() -> None:
    t = task()
    t.offer_next(ranked(t, cand("v:a")), NOW, WINDOW)
    t.log(NOW, "task.offered", "ev-1")
    doc = t.to_doc()
    assert doc["_id"] == "T-1" and doc["status"] == "offered" and "id" not in doc
    assert Task.from_doc(doc) == t
    # a document written before versions were kept reads as version 0
    del doc["version"]
    assert Task.from_doc(doc).version == 0


# --- the batch's pool ------------------------------------------------------------------------


def test_the_pool_moves_loads_as_a_batch_offers_and_completes() -> None:
    pool = Pool({c.id: c for c in (cand("v:b"), cand("v:a"), cand("v:l", skills=frozenset()))})
    assert [c.id for c in pool.for_skills([Skill.ELDER_CARE])] == ["v:a", "v:b"]
    pool.moved(None, "v:a")  # offered to v:a
    assert (pool.by_id["v:a"].open_tasks, pool.by_id["v:a"].recent_tasks) == (1, 1)
    pool.moved("v:a", "v:b")  # declined, offered to v:b
    assert pool.by_id["v:a"].open_tasks == 0 and pool.by_id["v:b"].open_tasks == 1
    pool.moved("v:b", "v:b")  # accepted: still v:b's
    assert pool.by_id["v:b"].open_tasks == 1
    pool.worked("v:b", 2.0)  # completed …
    pool.moved("v:b", None)  # … and no longer open
    b = pool.by_id["v:b"]
    assert (b.open_tasks, b.recent_tasks, b.recent_hours) == (0, 1, 2.0)
    pool.moved(None, "v:ghost")  # not a candidate of this batch: nothing to move
    assert set(pool.by_id) == {"v:a", "v:b", "v:l"}


def test_a_later_task_in_a_batch_sees_the_load_an_earlier_one_gave() -> None:
    pool = Pool({"v:a": cand("v:a", compound="compound:x", max_tasks=1), "v:b": cand("v:b")})
    first, second = task(id="T-1"), task(id="T-2", case_id="C-2")
    first.offer_next(match(pool.for_skills([Skill.ELDER_CARE]), first.need(NOW)), NOW, WINDOW)
    pool.moved(None, first.holder)
    second.offer_next(match(pool.for_skills([Skill.ELDER_CARE]), second.need(NOW)), NOW, WINDOW)
    assert (first.volunteer_id, second.volunteer_id) == ("v:a", "v:b")
    assert second.excluded == {"overloaded": 1}


# --- registry records ------------------------------------------------------------------------


def test_a_volunteer_round_trips_with_fields_it_does_not_know() -> None:
    doc = {
        "_id": "vol:001",
        "name": "李红梅",
        "skills": ["elder_care", "health"],
        "community": "community:a",
        "availability": [{"day": 6, "start": "14:00", "end": "24:00"}],
        "motto": "为人民服务",  # an edited seed's own field
    }
    vol = Volunteer.from_doc(doc)
    assert vol.extra == {"motto": "为人民服务"} and vol.version == 0 and vol.max_tasks == 3
    assert vol.windows() == (Window(6, 14 * 60, 24 * 60),)
    out = vol.to_doc()
    assert out["motto"] == "为人民服务" and out["_id"] == "vol:001" and "extra" not in out
    assert Volunteer.from_doc(out) == vol
    c = vol.candidate(open_tasks=2, recent_tasks=1, recent_hours=3.0)
    assert (c.open_tasks, c.recent_tasks, c.recent_hours) == (2, 3, 3.0)
    assert c.skills == frozenset({Skill.ELDER_CARE, Skill.HEALTH})

    vol.change({"max_tasks": 1, "note": "夜班"}, NOW)
    assert vol.max_tasks == 1 and vol.extra["note"] == "夜班" and vol.updated_at == NOW


def test_squads_brigade_and_hours_round_trip() -> None:
    squad = Squad.from_doc({"_id": "squad:legal", "name": "法治类", "skill": "legal"})
    squad.change({"captain_id": "vol:002"})
    assert Squad.from_doc(squad.to_doc()) == squad
    brigade = Brigade.from_doc({"name": "红马甲", "leader": "杨书记"})
    assert brigade.to_doc()["_id"] == "brigade"
    assert Brigade.from_doc(brigade.to_doc()) == brigade
    entry = ServiceHours("T-1", "task", "v:a", 2.0, "elder_care", "community:a", NOW)
    assert ServiceHours.from_doc(entry.to_doc()) == entry


def test_a_home_is_a_known_place_and_a_whole_point() -> None:
    places = Places.from_seed(
        {
            "communities": [
                {
                    "id": "community:a",
                    "compounds": [{"id": "compound:x", "lat": 26.7, "lng": 100.7}],
                },
                {"id": "community:b", "compounds": [{"id": "compound:y"}]},
            ],
            "bounds": {"min_lat": 26, "max_lat": 27, "min_lng": 100, "max_lng": 101},
        }
    )
    assert places.locate("community:a", "compound:x", None, None) == (26.7, 100.7)
    assert places.locate("community:a", None, 26.5, 100.5) == (26.5, 100.5)
    for args, field in (
        (("community:zz", None, None, None), "community"),
        (("community:a", "compound:y", None, None), "compound"),
        (("community:a", None, 26.5, None), "lat"),
        (("community:a", None, 40.0, 116.4), "lat"),
    ):
        with pytest.raises(Invalid) as err:
            places.locate(*args)  # type: ignore[arg-type]
        assert err.value.field == field and err.value.code == "validation_error"


# --- care ------------------------------------------------------------------------------------


def recipient(**kw: object) -> Recipient:
    base: dict[str, object] = {
        "_id": "care:1",
        "name": "和奶奶",
        "care_type": "elderly_alone",
        "community": "community:a",
        "cadence_days": 7,
        "assigned_volunteers": ["v:a", "v:b"],
    }
    return Recipient.from_doc({**base, **kw})


def days(n: int) -> timedelta:
    return timedelta(days=n)


def test_visits_fall_due_in_turn_and_move_the_schedule_on() -> None:
    rec = recipient()
    v1 = rec.visit_falls_due(1, NOW, days(7), days(2), NOW)
    v2 = rec.visit_falls_due(2, NOW + days(7), days(7), days(2), NOW)
    assert (v1.volunteer_id, v2.volunteer_id) == ("v:a", "v:b")
    assert v1.deadline == NOW + days(2) and v1.status == VisitStatus.OPEN
    assert (rec.next_seq, rec.last_due_at, rec.next_due_at) == (3, NOW + days(7), NOW + days(14))
    assert Visit.from_doc(v1.to_doc()) == v1
    assert Recipient.from_doc(rec.to_doc()) == rec


def test_a_change_moves_or_stops_the_visits() -> None:
    def cadence(n: int) -> timedelta:
        return days(n)

    rec = recipient(last_due_at=NOW)
    assert rec.change({"name": "和婆婆"}, NOW, cadence).next_due is None
    moved = rec.change({"cadence_days": 3}, NOW + days(1), cadence)
    assert moved.next_due == NOW + days(3) and not moved.stopped
    # a shorter cadence whose next visit is already past: now
    assert rec.change({"cadence_days": 1}, NOW + days(5), cadence).next_due == NOW + days(5)
    assert rec.change({"active": False}, NOW, cadence).stopped is True
    back = rec.change({"active": True}, NOW + days(9), cadence)
    assert back.next_due == NOW + days(9) and rec.active
    fresh = recipient()  # never due yet: the next visit is now
    assert fresh.change({"cadence_days": 14}, NOW, cadence).next_due == NOW


def record(
    visit: Visit,
    by: str,
    *,
    staff: bool = False,
    hours: float = 1.0,
    at: datetime | None = None,
    now: datetime = NOW,
) -> str | None:
    """Record ``visit`` as a volunteer ``by`` (or as staff)."""
    return visit.record(
        by=by,
        by_staff=staff,
        by_volunteer=not staff,
        hours=hours,
        note=None,
        visited_at=at,
        now=now,
    )


def test_recording_a_visit_who_when_and_how_late() -> None:
    rec = recipient()
    visit = rec.visit_falls_due(1, NOW, days(7), days(2), NOW)
    with pytest.raises(Forbidden) as err:
        record(visit, "v:c")
    assert err.value.code == "not_your_visit"
    with pytest.raises(Invalid) as bad:
        record(visit, "v:a", at=NOW + days(1))
    assert bad.value.field == "visited_at"

    alert = visit.overdue(NOW + days(2), ["v:a", "v:b"])
    assert alert.request_id == "care:care:1" and alert.due_at == visit.deadline
    assert visit.status == VisitStatus.OVERDUE
    # staff record it for the visit's volunteer, late
    assert record(visit, "staff:1", staff=True, hours=0.5, now=NOW + days(3)) == "v:a"
    assert visit.late is True and visit.status == VisitStatus.COMPLETED and visit.hours == 0.5
    assert (visit.recorded_by, visit.visited_by) == ("staff:1", "v:a")
    assert visit.visited_at == NOW + days(3)
    with pytest.raises(Conflict) as closed:
        record(visit, "v:a", now=NOW + days(3))
    assert closed.value.code == "visit_closed"


def test_refusals_carry_their_code() -> None:
    assert NotFound("No task T-9.").code == "not_found"
    assert Invalid("hours", "too many").field == "hours"
