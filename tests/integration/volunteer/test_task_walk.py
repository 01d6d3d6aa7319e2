"""The task walk on real Kafka and SecantusDB: offers, decline and expiry walking the list
to task.unmatched across a restart, accept/complete with hours, bad input, cancellation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.volunteer.conftest import Harness, routed
from tests.support import eventually
from tongxin.contracts.events import CaseClosed

# three seeded elder-care volunteers: v:a (same compound as the cases), v:b (same
# community), v:c (other community); offers last 3 s.
FAST_OFFERS = {"offer_accept_s": 3.0}


async def _task(h: Harness, task_id: str) -> dict[str, Any]:
    doc = await h.db.tasks.find_one({"_id": task_id})
    return doc or {}


def _types(events: list[tuple[str, dict[str, Any]]], task_id: str) -> list[tuple[str, str]]:
    return [(t, d.get("volunteer_id", "-")) for t, d in events if d.get("task_id") == task_id]


@pytest.mark.parametrize("harness", [FAST_OFFERS], indirect=True)
async def test_decline_and_expiry_walk_the_list_to_unmatched_across_a_restart(
    harness: Harness,
) -> None:
    h = harness
    await h.publish(routed("C-walk1"))
    task = await eventually(lambda: _offered(h, "T-walk1"), timeout=30, what="first offer")
    assert task["volunteer_id"] == "v:a"  # same compound first
    assert task["scores"]["proximity"] == 1.0 and "fairness" in task["scores"]

    # someone else cannot answer it; the offered volunteer declines
    r = await h.http.post("/v1/tasks/T-walk1/accept", headers=h.vol("v:b"))  # type: ignore[union-attr]
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_task"
    r = await h.http.post(  # type: ignore[union-attr]
        "/v1/tasks/T-walk1/decline", json={"reason": "出差"}, headers=h.vol("v:a")
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "offered" and r.json()["volunteer_id"] == "v:b"
    # the decliner's view no longer lists it; a second decline is refused, nothing changes
    again = await h.http.post("/v1/tasks/T-walk1/decline", headers=h.vol("v:a"))  # type: ignore[union-attr]
    assert again.status_code == 409 and again.json()["error"]["code"] == "offer_closed"
    assert (await _task(h, "T-walk1"))["attempt"] == 2

    # restart while v:b's offer is pending: its durable deadline still fires, then v:c's
    await h.restart()
    done = await eventually(
        lambda: _status(h, "T-walk1", "unmatched"), timeout=40, what="walked to unmatched"
    )
    assert done["tried"] == ["v:a", "v:b", "v:c"]
    outcomes = {k: v["outcome"] for k, v in done["offer_outcomes"].items()}
    assert outcomes == {"1": "declined", "2": "expired", "3": "expired"}
    assert all(o["scores"]["total"] > 0 for o in done["offers"])

    events = await eventually(
        lambda: _events_for(h, "T-walk1", 8), timeout=20, what="all events published"
    )
    assert events == [
        ("task.offered", "v:a"),
        ("task.declined", "v:a"),
        ("task.offered", "v:b"),
        ("task.expired", "v:b"),
        ("task.offered", "v:c"),
        ("task.expired", "v:c"),
        ("task.unmatched", "-"),
    ]
    unmatched = next(d for t, d in await h.task_events() if t == "task.unmatched")
    assert unmatched["tried"] == ["v:a", "v:b", "v:c"]
    # each offer deadline fired exactly once
    fired = await h.db.deadlines.count_documents({"subject": "T-walk1", "status": "fired"})
    assert fired == 2
    # answering after the walk ended is refused
    late = await h.http.post("/v1/tasks/T-walk1/accept", headers=h.vol("v:c"))  # type: ignore[union-attr]
    assert late.status_code == 409 and late.json()["error"]["code"] == "offer_closed"


async def _offered(h: Harness, task_id: str) -> dict[str, Any] | None:
    t = await _task(h, task_id)
    return t if t.get("status") == "offered" else None


async def _status(h: Harness, task_id: str, status: str) -> dict[str, Any] | None:
    t = await _task(h, task_id)
    return t if t.get("status") == status else None


async def _events_for(h: Harness, task_id: str, n: int) -> list[tuple[str, str]] | None:
    ev = _types(await h.task_events(), task_id)
    return ev if len(ev) >= n - 1 else None


async def test_accept_and_complete_record_hours_and_refuse_bad_input(harness: Harness) -> None:
    h = harness
    http = h.http
    assert http is not None
    await h.publish(routed("C-acc1"))
    await eventually(lambda: _offered(h, "T-acc1"), timeout=30, what="offer")

    # a volunteer sees only their own tasks (and not other volunteers' scores)
    mine = (await http.get("/v1/tasks", headers=h.vol("v:a"))).json()
    assert [t["id"] for t in mine] == ["T-acc1"] and "ranking" not in mine[0]
    assert (await http.get("/v1/tasks", headers=h.vol("v:b"))).json() == []
    staff_view = (await http.get("/v1/tasks/T-acc1", headers=h.staff())).json()
    assert staff_view["offers"][0]["ranking"][0]["volunteer_id"] == "v:a"
    assert staff_view["offers"][0]["outcome"] == "pending"

    # completing before accepting, staff accepting, and anonymous callers are refused
    r = await http.post("/v1/tasks/T-acc1/complete", json={"hours": 1}, headers=h.vol("v:a"))
    assert r.status_code == 409
    assert (await http.post("/v1/tasks/T-acc1/accept", headers=h.staff())).status_code == 403
    assert (await http.post("/v1/tasks/T-acc1/accept")).status_code == 401
    assert (await http.post("/v1/tasks/T-nope/accept", headers=h.vol("v:a"))).status_code == 404

    r = await http.post("/v1/tasks/T-acc1/accept", headers=h.vol("v:a"))
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert (await http.post("/v1/tasks/T-acc1/accept", headers=h.vol("v:a"))).status_code == 409

    before = await _task(h, "T-acc1")
    for bad in ({"hours": 0}, {"hours": -2}, {"hours": 24.5}, {"hours": "x"}, {}):
        r = await http.post("/v1/tasks/T-acc1/complete", json=bad, headers=h.vol("v:a"))
        assert r.status_code == 422, bad
        assert r.json()["error"]["code"] == "validation_error"
    r = await http.post("/v1/tasks/T-acc1/complete", json={"hours": 2}, headers=h.vol("v:b"))
    assert r.status_code == 403
    assert await _task(h, "T-acc1") == before  # nothing changed
    assert await h.db.service_hours.count_documents({}) == 0

    r = await http.post(
        "/v1/tasks/T-acc1/complete", json={"hours": 2.5, "note": "送餐"}, headers=h.vol("v:a")
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed" and r.json()["hours"] == 2.5

    hours = (await http.get("/v1/volunteers/v:a/hours", headers=h.vol("v:a"))).json()
    assert hours["total_hours"] == 2.5 and hours["recent_completed"] == 1
    assert hours["by_skill"] == {"elder_care": 2.5}
    assert (await http.get("/v1/volunteers/v:a/hours", headers=h.vol("v:b"))).status_code == 403
    board = (await http.get("/v1/squads/leaderboard", headers=h.vol("v:b"))).json()
    assert board[0]["squad_id"] == "squad:elder_care" and board[0]["hours"] == 2.5

    events = await eventually(
        lambda: _events_for(h, "T-acc1", 4), timeout=20, what="accepted and completed published"
    )
    assert events == [
        ("task.offered", "v:a"),
        ("task.accepted", "v:a"),
        ("task.completed", "v:a"),
    ]
    completed = next(d for t, d in await h.task_events() if t == "task.completed")
    assert completed["hours"] == 2.5 and completed["note"] == "送餐"

    metrics = (await http.get("/metrics")).text
    assert 'tongxin_volunteer_tasks_total{outcome="completed"} 1.0' in metrics
    assert "tongxin_volunteer_match_seconds_count 1.0" in metrics
    assert "tongxin_volunteer_utilisation_ratio" in metrics


async def test_redelivered_case_routed_opens_one_task_and_one_offer(harness: Harness) -> None:
    h = harness
    env = await h.publish(routed("C-dup1"))
    await h.publish(routed("C-dup1"), event_id=env.id)  # the same event again
    await h.publish(routed("C-dup1"))  # and a second event for the same case
    await eventually(lambda: _offered(h, "T-dup1"), timeout=30, what="offer")
    await eventually(lambda: _processed(h, 2), timeout=20, what="both distinct events were handled")
    assert await h.db.tasks.count_documents({"case_id": "C-dup1"}) == 1
    events = await h.task_events(min_count=1)
    assert [t for t, d in events if d.get("task_id") == "T-dup1"] == ["task.offered"]


async def _processed(h: Harness, n: int) -> bool:
    return await h.db.processed_events.count_documents({}) >= n or (
        await h.db.tasks.count_documents({}) >= 1
        and await h.db.processed_events.count_documents({}) >= 1
    )


async def test_a_closed_case_cancels_the_pending_offer(harness: Harness) -> None:
    h = harness
    case = routed("C-cl1")
    await h.publish(case)
    task = await eventually(lambda: _offered(h, "T-cl1"), timeout=30, what="offer")
    from datetime import UTC, datetime

    await h.publish(
        CaseClosed(
            request_id=case.request_id, case_id="C-cl1", at=datetime.now(UTC), reason="withdrawn"
        )
    )
    done = await eventually(
        lambda: _status(h, "T-cl1", "cancelled"), timeout=30, what="task cancelled"
    )
    assert done["case_status"] == "closed" and done["volunteer_id"] == task["volunteer_id"]
    pending = await h.db.deadlines.count_documents({"subject": "T-cl1", "status": "pending"})
    assert pending == 0
    r = await h.http.post("/v1/tasks/T-cl1/accept", headers=h.vol(task["volunteer_id"]))  # type: ignore[union-attr]
    assert r.status_code == 409


async def test_no_volunteer_with_the_skill_is_unmatched_at_once(harness: Harness) -> None:
    h = harness
    await h.publish(routed("C-none1", skills=["tutoring"], category="education"))
    done = await eventually(
        lambda: _status(h, "T-none1", "unmatched"), timeout=30, what="unmatched"
    )
    assert done["tried"] == [] and done["volunteer_id"] is None
    assert done["unmatched_reason"].startswith("no active volunteer with the skill")
    events = await eventually(lambda: _events_for(h, "T-none1", 2), timeout=20, what="event")
    assert events == [("task.unmatched", "-")]
