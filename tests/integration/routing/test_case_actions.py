"""Case handling over HTTP and the case-command topic against real Kafka and SecantusDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.integration.routing.conftest import Routing
from tests.support import eventually, headers_of, read_topic
from tongxin.contracts.events import (
    AcknowledgeCase,
    RequestFeedbackGiven,
    RequestWithdrawn,
    ResolveCase,
)
from tongxin.contracts.topics import INBOUND_CASE_COMMANDS, dlq_topic
from tongxin.runtime.auth import Role

PROPERTY = "station:liyuan:property"


async def test_lifecycle_over_http_emits_every_case_event(routing: Routing) -> None:
    cid = await routing.submit("sanitation")
    http = routing.http
    # another unit: reads and actions are 404, like an unknown id (ids cannot be probed)
    other = routing.dept("dept:justice")
    assert (await http.get(f"/v1/cases/{cid}", headers=other)).status_code == 404
    r = await http.post(f"/v1/cases/{cid}/acknowledge", headers=other)
    unknown = await http.post("/v1/cases/C-NO-SUCH-CASE/acknowledge", headers=other)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert r.json() == unknown.json()
    mine = routing.dept(PROPERTY)
    view = (await http.get(f"/v1/cases/{cid}", headers=mine)).json()
    assert view["allowed_actions"] == ["acknowledge", "return"]
    # an invalid transition: 409 naming the allowed ones, and nothing changes
    before = await routing.case(cid)
    r = await http.post(f"/v1/cases/{cid}/resolve", headers=mine, json={"note": "x"})
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "invalid_transition"
    assert err["details"]["allowed"] == ["acknowledge", "return"]
    assert await routing.case(cid) == before
    r = await http.post(f"/v1/cases/{cid}/acknowledge", headers=mine)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged"
    r = await http.post(f"/v1/cases/{cid}/progress", headers=mine, json={"note": "已派保洁"})
    assert r.json()["status"] == "in_progress"
    r = await http.post(f"/v1/cases/{cid}/resolve", headers=mine, json={"note": "已清理"})
    assert r.json()["status"] == "resolved"
    doc = await routing.case(cid)
    await routing.publish(
        "tongxin.requests.v1",
        RequestFeedbackGiven(
            request_id=doc["request_id"], rating="satisfied", given_at=datetime.now(UTC)
        ),
    )
    types = await routing.events_of(cid, 5)
    assert types == [
        "case.routed",
        "case.acknowledged",
        "case.progressed",
        "case.resolved",
        "case.closed",
    ]
    closed = await routing.case(cid)
    assert closed["status"] == "closed" and closed["close_reason"] == "satisfied"
    # deadlines of a closed case are all settled
    pending = await routing.db.deadlines.count_documents({"subject": cid, "status": "pending"})
    assert pending == 0


async def test_return_and_reassignment_by_the_town(routing: Routing) -> None:
    cid = await routing.submit("sanitation")
    http = routing.http
    mine = routing.dept(PROPERTY)
    r = await http.post(f"/v1/cases/{cid}/return", headers=mine)
    assert r.status_code == 422  # a return needs its reason
    r = await http.post(f"/v1/cases/{cid}/return", headers=mine, json={"reason": "属住建职责"})
    assert r.status_code == 200 and r.json()["status"] == "returned"
    assert r.json()["accountable_unit"] == PROPERTY  # accountable until reassigned
    # a department may not reassign; unknown units are 422 and change nothing
    r = await http.post(f"/v1/cases/{cid}/reassign", headers=mine, json={"units": ["dept:housing"]})
    assert r.status_code == 403
    staff = routing.auth(Role.STAFF, "town:yongbei")
    before = await routing.case(cid)
    r = await http.post(f"/v1/cases/{cid}/reassign", headers=staff, json={"units": ["dept:nope"]})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == ["body", "units", 0]
    assert await routing.case(cid) == before
    r = await http.post(
        f"/v1/cases/{cid}/reassign", headers=staff, json={"units": ["dept:housing"], "note": "转"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "routed" and body["accountable_unit"] == "dept:housing"
    assert body["revision"] == 1
    # the old unit no longer sees it
    assert (await http.get(f"/v1/cases/{cid}", headers=mine)).status_code == 404
    await routing.events_of(cid, 3)  # published after the commit
    events = await routing.case_events(cid)
    assert [t for t, _ in events] == ["case.routed", "case.returned", "case.routed"]
    assert events[2][1]["revision"] == 1 and events[2][1]["needs_volunteers"] is False
    assert events[2][1]["classification"]["rule"] == "reassigned"


async def test_whistle_by_hand(routing: Routing) -> None:
    cid = await routing.submit("public_affairs")
    http = routing.http
    staff = routing.auth(Role.STAFF)
    before = await routing.case(cid)
    r = await http.post(f"/v1/cases/{cid}/whistle", headers=staff, json={"units": ["dept:x"]})
    assert r.status_code == 422
    r = await http.post(
        f"/v1/cases/{cid}/whistle", headers=staff, json={"units": ["community:liyuan"]}
    )
    assert r.status_code == 422  # only alliance departments are whistled
    r = await http.post(
        f"/v1/cases/{cid}/whistle",
        headers=routing.dept("dept:justice"),
        json={"units": ["dept:justice"]},
    )
    assert r.status_code == 403
    assert await routing.case(cid) == before
    r = await http.post(
        f"/v1/cases/{cid}/whistle",
        headers=staff,
        json={"units": ["dept:justice", "dept:civil-affairs"], "reason": "涉及多部门"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["tier"] == "major" and r.json()["whistled"] is True
    await routing.events_of(cid, 3)  # published after the commit
    events = await routing.case_events(cid)
    escalated = [d for t, d in events if t == "case.escalated"]
    assert [(d["to_unit"], d["trigger"], d["to_level"]) for d in escalated] == [
        ("dept:justice", "whistle", "department"),
        ("dept:civil-affairs", "whistle", "department"),
    ]
    # the whistled department now sees the case and reports in
    r = await http.post(f"/v1/cases/{cid}/acknowledge", headers=routing.dept("dept:justice"))
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    r = await http.post(f"/v1/cases/{cid}/whistle", headers=staff, json={"units": ["dept:justice"]})
    assert r.status_code == 409


async def test_commands_from_department_systems(routing: Routing) -> None:
    cid = await routing.submit("sanitation")
    rid = (await routing.case(cid))["request_id"]
    refused = await routing.command(
        AcknowledgeCase(request_id=rid, case_id=cid, unit="dept:justice")
    )
    bad = await routing.command(ResolveCase(request_id=rid, case_id=cid, unit=PROPERTY))
    await routing.command(AcknowledgeCase(request_id=rid, case_id=cid, unit=PROPERTY, by="sys"))
    types = await routing.events_of(cid, 2)
    assert types[:2] == ["case.routed", "case.acknowledged"]
    dlq = await read_topic(
        routing.stack.bootstrap,
        routing.settings.topic(dlq_topic(INBOUND_CASE_COMMANDS.name)),
        min_count=2,
    )
    errors = {headers_of(r)["ce_id"]: headers_of(r)["x-error"] for r in dlq}
    assert "not assigned" in errors[refused.id]
    assert "allowed now: acknowledge, return" in errors[bad.id]
    assert headers_of(dlq[0])["x-attempts"] == "1"  # parked at once, not retried
    doc = await routing.case(cid)
    assert doc["status"] == "acknowledged"
    ack = [h for h in doc["history"] if h["event"] == "case.acknowledged"]
    assert ack[0]["by"] == "sys"


async def test_withdrawal_closes_the_case(routing: Routing) -> None:
    cid = await routing.submit("employment")
    rid = (await routing.case(cid))["request_id"]
    await routing.publish(
        "tongxin.requests.v1",
        RequestWithdrawn(request_id=rid, reason="已解决", withdrawn_at=datetime.now(UTC)),
    )
    assert await routing.events_of(cid, 2) == ["case.routed", "case.closed"]
    doc = await routing.case(cid)
    assert doc["close_reason"] == "withdrawn"


async def test_dissatisfied_feedback_reopens(routing: Routing) -> None:
    cid = await routing.submit("sanitation")
    rid = (await routing.case(cid))["request_id"]
    http, mine = routing.http, routing.dept(PROPERTY)
    await http.post(f"/v1/cases/{cid}/acknowledge", headers=mine)
    await http.post(f"/v1/cases/{cid}/resolve", headers=mine)
    await routing.publish(
        "tongxin.requests.v1",
        RequestFeedbackGiven(
            request_id=rid,
            case_id=cid,
            rating="dissatisfied",
            comment="还是很脏",
            given_at=datetime.now(UTC),
        ),
    )
    types = await routing.events_of(cid, 4)
    assert types == ["case.routed", "case.acknowledged", "case.resolved", "case.reopened"]
    view = (await http.get(f"/v1/cases/{cid}", headers=mine)).json()
    assert view["status"] == "reopened" and view["allowed_actions"] == ["acknowledge", "return"]


async def test_listing_is_confined_and_pages(routing: Routing) -> None:
    ids = [await routing.submit("sanitation") for _ in range(3)]
    await routing.submit("legal_aid")
    http = routing.http
    mine = routing.dept(PROPERTY)
    first = await http.get("/v1/cases", headers=mine, params={"limit": 2})
    assert first.status_code == 200 and len(first.json()) == 2
    cursor = first.headers["x-next-cursor"]
    rest = await http.get("/v1/cases", headers=mine, params={"limit": 2, "cursor": cursor})
    seen = [c["id"] for c in first.json() + rest.json()]
    assert sorted(seen) == sorted(ids)  # the legal-aid case is not the property centre's
    bad = await http.get("/v1/cases", headers=mine, params={"cursor": "!!"})
    assert bad.status_code == 400
    anon = await http.get("/v1/cases")
    assert anon.status_code == 401
    vol = await http.get("/v1/cases", headers=routing.auth(Role.VOLUNTEER))
    assert vol.status_code == 403


async def test_units_policy_and_metrics(routing: Routing) -> None:
    http = routing.http
    units = (await http.get("/v1/units", params={"kind": "department"})).json()
    assert len(units) == 11 and all(u["kind"] == "department" for u in units)
    every = {u["id"] for u in (await http.get("/v1/units")).json()}
    assert {"town:yongbei", "county:yongsheng", "station:chengdong:mass-org"} <= every
    policy = (await http.get("/v1/policy")).json()
    assert policy["tiers"]["major"]["acknowledge_s"] == 7200 * routing.settings.deadline_scale
    assert policy["source"].endswith("routing.json")
    cid = await routing.submit("sanitation")
    await routing.http.post(f"/v1/cases/{cid}/acknowledge", headers=routing.dept(PROPERTY))

    async def scraped() -> str | None:
        text = (await http.get("/metrics")).text
        ok = 'tongxin_routing_open_cases{tier="routine",unit="station:liyuan:property"} 1.0'
        return text if ok in text and "tongxin_routing_unit_response_rate" in text else None

    text = await eventually(scraped, timeout=10, what="routing gauges")
    assert 'tongxin_routing_report_in_seconds_count{tier="routine"} 1.0' in text
    assert 'tongxin_routing_cases_routed_total{rule="everyday-item",tier="routine"} 1.0' in text
    stats = (await http.get("/v1/stats/units", headers=routing.auth(Role.STAFF))).json()
    row = stats["units"]["station:liyuan:property"]
    assert row["response_rate"] == 1.0 and row["name"] == "梨园社区物业服务中心"
    own = await http.get("/v1/stats/units", headers=routing.dept("dept:justice"))
    assert list(own.json()["units"]) == ["dept:justice"]
    assert json.dumps(own.json())  # serialisable
