"""The resident's timeline from case and task events, public status on every change,
feedback exactly once per resolution, withdrawal — against the real stack."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.integration.intake.conftest import Intake, now
from tests.support import eventually
from tongxin.contracts.events import (
    CaseAcknowledged,
    CaseClosed,
    CaseEscalated,
    CaseProgressed,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    RuleFired,
    TaskAccepted,
    TaskCompleted,
    TaskDeclined,
    TaskOffered,
)

CASES = "tongxin.cases.v1"
TASKS = "tongxin.volunteer.tasks.v1"


def routed(rid: str) -> CaseRouted:
    t = now()
    return CaseRouted(
        request_id=rid,
        case_id=f"C-{rid}",
        tier="routine",
        category="public_facilities",
        community="community:liyuan",
        compound="compound:jinyuan",
        units=["community:liyuan"],
        classification=RuleFired(rule="facility", reason="everyday facility"),
        acknowledge_by=t + timedelta(hours=1),
        resolve_by=t + timedelta(hours=24),
        needs_volunteers=True,
        skills=["convenience"],
    )


def case(kind: type, rid: str, **kw: Any) -> Any:
    return kind(request_id=rid, case_id=f"C-{rid}", unit="community:liyuan", at=now(), **kw)


async def walk_to_resolution(intake: Intake, rid: str) -> None:
    await intake.publish(CASES, routed(rid))
    await intake.wait_status(rid, "routed")
    await intake.publish(CASES, case(CaseAcknowledged, rid))
    task = {"task_id": f"T-{rid}", "case_id": f"C-{rid}", "volunteer_id": "v:1"}
    await intake.publish(
        TASKS,
        TaskOffered(
            request_id=rid,
            volunteer_name="李红梅",
            skill="convenience",
            accept_by=now() + timedelta(minutes=30),
            **task,
        ),
    )
    await intake.publish(TASKS, TaskDeclined(request_id=rid, at=now(), reason="busy", **task))
    await intake.publish(TASKS, TaskAccepted(request_id=rid, at=now(), **task))
    await intake.publish(CASES, case(CaseProgressed, rid, note="已联系电工"))
    await intake.publish(TASKS, TaskCompleted(request_id=rid, at=now(), hours=1.5, **task))
    await intake.publish(CASES, case(CaseResolved, rid, note="已更换灯泡"))
    await intake.wait_status(rid, "resolved")


async def test_timeline_follows_case_and_task_events_to_resolution(intake: Intake) -> None:
    answer = await intake.new_request()
    rid, code = answer["id"], answer["tracking_code"]
    await walk_to_resolution(intake, rid)

    async def all_entries() -> dict[str, Any] | None:
        v = await intake.view(rid)
        return v if len(v["timeline"]) >= 9 else None

    staff = await eventually(all_entries, what="every event on the timeline")
    kinds = [e["kind"] for e in staff["timeline"]]
    for k in (
        "request.submitted",
        "case.routed",
        "case.acknowledged",
        "task.offered",
        "task.declined",
        "task.accepted",
        "case.progressed",
        "task.completed",
        "case.resolved",
    ):
        assert k in kinds, (k, kinds)
    assert staff["tier"] == "routine" and staff["case_id"] == f"C-{rid}"
    assert staff["awaiting_feedback"] is True and staff["resolution_round"] == 1

    resident = (await intake.http.get(f"/v1/requests/{rid}", params={"tracking_code": code})).json()
    rkinds = [e["kind"] for e in resident["timeline"]]
    assert "task.declined" not in rkinds  # internal
    assert all("event_id" not in e for e in resident["timeline"])
    assert "李红梅" not in str(resident)
    routed_entry = next(e for e in resident["timeline"] if e["kind"] == "case.routed")
    assert routed_entry["unit_name"] == "梨园社区"

    public = await intake.records("tongxin.public.status.v1", rid, min_count=5)
    statuses = [d["status"] for _h, d in public]
    assert statuses == ["submitted", "routed", "acknowledged", "in_progress", "resolved"]
    assert all(d["phone_masked"] == "138****1234" for _h, d in public)
    assert "张秀英" not in str(public) and "已更换灯泡" not in str(public)
    assert public[1][1]["tier"] == "routine"


async def test_redelivered_case_event_changes_nothing(intake: Intake) -> None:
    rid = (await intake.new_request())["id"]
    ev = routed(rid)
    env = await intake.publish(CASES, ev)
    await intake.wait_status(rid, "routed")
    await intake.publish(CASES, ev, event_id=env.id)  # the same event again
    await intake.publish(CASES, case(CaseAcknowledged, rid))
    v = await intake.wait_status(rid, "acknowledged")
    assert [e["kind"] for e in v["timeline"]].count("case.routed") == 1


async def test_feedback_is_accepted_once_per_resolution_and_published(intake: Intake) -> None:
    answer = await intake.new_request()
    rid, code = answer["id"], answer["tracking_code"]
    url = f"/v1/requests/{rid}/feedback"
    early = await intake.http.post(url, json={"tracking_code": code, "rating": "satisfied"})
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_resolved"
    await walk_to_resolution(intake, rid)

    wrong = await intake.http.post(url, json={"tracking_code": "y" * 16, "rating": "satisfied"})
    assert wrong.status_code == 404
    bad = await intake.http.post(url, json={"tracking_code": code, "rating": "meh"})
    assert bad.status_code == 422

    body = {"tracking_code": code, "rating": "dissatisfied", "comment": "灯还是不亮"}
    tries = await asyncio.gather(*(intake.http.post(url, json=body) for _ in range(4)))
    assert sorted(r.status_code for r in tries) == [201, 409, 409, 409], [r.text for r in tries]
    assert {r.json()["error"]["code"] for r in tries if r.status_code == 409} == {
        "feedback_already_given"
    }
    events = [
        d
        for h, d in await intake.records("tongxin.requests.v1", rid, min_count=2)
        if h["ce_type"] == "tongxin.request.feedback_given.v1"
    ]
    assert len(events) == 1
    assert events[0]["rating"] == "dissatisfied" and events[0]["case_id"] == f"C-{rid}"
    assert events[0]["resolution_round"] == 1

    # routing reopens (回访 dissatisfied); a second resolution may be rated again, once
    await intake.publish(CASES, case(CaseReopened, rid, reason="dissatisfied"))
    await intake.wait_status(rid, "reopened")
    again = await intake.http.post(url, json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "feedback_already_given"
    await intake.publish(CASES, case(CaseResolved, rid))
    await intake.wait_status(rid, "resolved")
    second = await intake.http.post(url, json={"tracking_code": code, "rating": "satisfied"})
    assert second.status_code == 201 and second.json()["round"] == 2
    await intake.publish(CASES, case(CaseClosed, rid, reason="satisfied"))
    v = await intake.wait_status(rid, "closed")
    assert [f["rating"] for f in v["feedback"]] == ["dissatisfied", "satisfied"]
    # withdrawing a closed request is refused
    w = await intake.http.post(f"/v1/requests/{rid}/withdraw", json={"tracking_code": code})
    assert w.status_code == 409 and w.json()["error"]["code"] == "not_withdrawable"


async def test_withdraw_before_resolution_publishes_and_late_events_do_not_revive(
    intake: Intake,
) -> None:
    answer = await intake.new_request()
    rid, code = answer["id"], answer["tracking_code"]
    await intake.publish(CASES, routed(rid))
    await intake.wait_status(rid, "routed")
    r = await intake.http.post(
        f"/v1/requests/{rid}/withdraw", json={"tracking_code": code, "reason": "已自行解决"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "withdrawn"
    again = await intake.http.post(f"/v1/requests/{rid}/withdraw", json={"tracking_code": code})
    assert again.status_code == 409

    recs = await intake.records("tongxin.requests.v1", rid, min_count=2)
    withdrawn = [d for h, d in recs if h["ce_type"] == "tongxin.request.withdrawn.v1"]
    assert withdrawn and withdrawn[0]["reason"] == "已自行解决"
    assert withdrawn[0]["case_id"] == f"C-{rid}"
    public = await intake.records("tongxin.public.status.v1", rid, min_count=3)
    assert public[-1][1]["status"] == "withdrawn"

    # routing resolves it before it saw the withdrawal: recorded, status stays withdrawn
    await intake.publish(CASES, case(CaseResolved, rid))
    await intake.publish(
        CASES,
        case(
            CaseEscalated,
            rid,
            from_level="community",
            to_level="town",
            to_unit="town:yongbei",
            reason="missed",
            deadline=now(),
        ),
    )

    async def both_recorded() -> dict[str, Any] | None:
        v = await intake.view(rid)
        kinds = [e["kind"] for e in v["timeline"]]
        return v if "case.resolved" in kinds and "case.escalated" in kinds else None

    v = await eventually(both_recorded, what="late events on the timeline")
    assert v["status"] == "withdrawn" and v["awaiting_feedback"] is False
    esc = next(e for e in v["timeline"] if e["kind"] == "case.escalated")
    assert esc["note"] == "已升级至永北镇党委督办"
    fb = await intake.http.post(
        f"/v1/requests/{rid}/feedback", json={"tracking_code": code, "rating": "satisfied"}
    )
    assert fb.status_code == 409


async def test_events_for_unknown_requests_and_care_visits_are_ignored(intake: Intake) -> None:
    await intake.publish(CASES, routed("YS-20000101-000001"))
    rid = (await intake.new_request())["id"]
    await intake.publish(CASES, routed(rid))
    await intake.wait_status(rid, "routed")  # the partition moved on past the unknown one
    assert await intake.db.requests.count_documents({"_id": "YS-20000101-000001"}) == 0


async def test_feedback_after_the_window_is_refused(intake: Intake) -> None:
    answer = await intake.new_request()
    rid, code = answer["id"], answer["tracking_code"]
    await walk_to_resolution(intake, rid)
    await intake.db.requests.update_one(
        {"_id": rid}, {"$set": {"feedback_due": now() - timedelta(seconds=1)}}
    )
    r = await intake.http.post(
        f"/v1/requests/{rid}/feedback", json={"tracking_code": code, "rating": "satisfied"}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "feedback_window_closed"
    assert (await intake.view(rid))["awaiting_feedback"] is True
