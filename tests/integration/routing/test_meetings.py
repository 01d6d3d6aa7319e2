"""The joint meeting: agenda of deliberation items, decisions that dispatch the case."""

from __future__ import annotations

from tests.integration.routing.conftest import Routing
from tongxin.runtime.auth import Role


async def test_agenda_and_decision_dispatch(routing: Routing) -> None:
    cid = await routing.submit("public_affairs", title="小区停车位划分")
    plain = await routing.submit("sanitation")
    http = routing.http
    staff = routing.auth(Role.STAFF, "town:yongbei")
    nxt = (await http.get("/v1/meetings/next", headers=staff)).json()
    assert nxt["id"].startswith("M-") and nxt["scheduled_at"]
    items = {i["case_id"]: i for i in nxt["agenda"]}
    assert items[cid]["item"] == "deliberation" and plain not in items
    # bad input: unknown meeting date, unknown unit, a case not on the agenda, a department
    body = {"case_id": cid, "decision": "由业委会牵头划线", "units": ["owc:jinyuan"]}
    before = await routing.case(cid)
    assert (
        await http.post("/v1/meetings/M-2025-07-24/decisions", headers=staff, json=body)
    ).status_code == 404
    mid = nxt["id"]
    url = f"/v1/meetings/{mid}/decisions"
    r = await http.post(url, headers=staff, json={**body, "units": ["owc:nowhere"]})
    assert r.status_code == 422
    r = await http.post(url, headers=staff, json={**body, "case_id": plain})
    assert r.status_code == 409
    r = await http.post(url, headers=routing.dept("community:liyuan"), json=body)
    assert r.status_code == 403
    assert await routing.case(cid) == before
    r = await http.post(url, headers=staff, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["case"]["accountable_unit"] == "owc:jinyuan"
    assert out["case"]["meeting_decision"]["meeting_id"] == mid
    assert out["case"]["classification"]["rule"] == "meeting-decision"
    # the relay publishes after the commit: wait for this case's second event
    assert await routing.events_of(cid, 2) == ["case.routed", "case.routed"]
    events = await routing.case_events(cid)
    assert [t for t, _ in events] == ["case.routed", "case.routed"]
    assert events[1][1]["revision"] == 1 and events[1][1]["units"][0] == "owc:jinyuan"
    # decided: off the agenda, in the minutes; deciding again is refused
    nxt = (await http.get("/v1/meetings/next", headers=staff)).json()
    assert cid not in {i["case_id"] for i in nxt["agenda"]}
    assert [d["case_id"] for d in nxt["decisions"]] == [cid]
    minutes = (await http.get(f"/v1/meetings/{mid}", headers=staff)).json()
    assert minutes["decisions"][0]["decision"] == "由业委会牵头划线"
    assert (await http.post(url, headers=staff, json=body)).status_code == 409
