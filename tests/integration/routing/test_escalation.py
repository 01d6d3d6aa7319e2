"""Durable escalation: two replicas, one restarted in between, escalate exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration.routing.conftest import Routing
from tests.support import eventually

# a major case's report-in (2 h) and the town's deadline (2 h) become 3 s each
SCALE = {"deadline_scale": 3 / 7200}


@pytest.mark.parametrize("routing", [SCALE], indirect=True)
async def test_unacknowledged_major_case_escalates_exactly_once_across_replicas(
    routing: Routing,
) -> None:
    second = await routing.add_replica()
    cid = await routing.submit("safety_hazard", urgency="emergency")
    doc = await routing.case(cid)
    assert doc["tier"] == "major" and doc["units"] == ["dept:housing", "town:yongbei"]
    # restart the first replica before the deadline falls due
    first = routing.replicas[0]
    await first.stop()
    await first.start()

    async def escalated_twice() -> list[tuple[str, dict]] | None:
        events = [e for e in await routing.case_events(cid, 1) if e[0] == "case.escalated"]
        return events if len(events) >= 2 else None

    events = await eventually(escalated_twice, timeout=30, interval=0.3, what="town, county")

    # the county deadline is now running; wait until it has fired too, so any duplicate
    # of the earlier escalations would have had its chance to appear
    async def county_fired() -> bool:
        n = await routing.db.deadlines.count_documents(
            {"subject": cid, "status": "fired", "payload.unit": "county:yongsheng"}
        )
        return n == 1

    await eventually(county_fired, timeout=30, what="the county deadline fired")
    events = [e for e in await routing.case_events(cid, 1) if e[0] == "case.escalated"]
    targets = Counter(d["to_unit"] for _, d in events)
    assert targets == {"town:yongbei": 1, "county:yongsheng": 1}
    town = next(d for _, d in events if d["to_unit"] == "town:yongbei")
    assert (town["from_level"], town["to_level"], town["unit"]) == (
        "community",
        "town",
        "dept:housing",
    )
    fired = [d async for d in routing.db.deadlines.find({"subject": cid, "status": "fired"})]
    assert len(fired) == 3  # department, town, county: each fired once, by one replica
    case = await routing.case(cid)
    assert case["level"] == "county"
    history = [h["event"] for h in case["history"]]
    assert history.count("case.escalated") == 2
    assert second.app is not None
    metrics = (await routing.http.get("/metrics")).text + (
        await second.http.get("/metrics")  # type: ignore[union-attr]
    ).text
    assert "tongxin_routing_deadline_breaches_total" in metrics
    # the escalated, unresolved case is on the joint meeting's agenda
    from tongxin.runtime.auth import Role

    agenda = (await routing.http.get("/v1/meetings/next", headers=routing.auth(Role.STAFF))).json()
    assert any(i["case_id"] == cid and i["item"] == "escalated" for i in agenda["agenda"])


@pytest.mark.parametrize("routing", [SCALE], indirect=True)
async def test_acknowledged_in_time_never_escalates(routing: Routing) -> None:
    cid = await routing.submit("safety_hazard")
    r = await routing.http.post(
        f"/v1/cases/{cid}/acknowledge", headers=routing.dept("dept:housing")
    )
    assert r.status_code == 200 and r.json()["assignments"][0]["in_time"] is True

    async def settled() -> bool:
        ack = await routing.db.deadlines.find_one({"subject": cid, "kind": "ack"})
        return ack is not None and ack["status"] == "cancelled"

    await eventually(settled, timeout=10, what="the report-in deadline was cancelled")
    await routing.events_of(cid, 2)  # published after the commit
    events = await routing.case_events(cid)
    assert [t for t, _ in events] == ["case.routed", "case.acknowledged"]
