"""Special-care visits on cadence with an overdue alert across a restart, and the registry
API's validation (unknown skill or compound → 422, nothing changes)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.volunteer.conftest import Harness
from tests.support import eventually

# one cadence "day" is 1.5 s: a 3-day cadence is 4.5 s; a visit must be recorded within 2 s
FAST_CARE = {"care_day_s": 1.5, "care_visit_window_s": 2.0}
RECIPIENT = {
    "id": "care:t1",
    "name": "和奶奶",
    "care_type": "elderly_alone",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "address": "金苑小区3栋102",
    "phone": "13908871001",
    "cadence_days": 3,
    "assigned_volunteers": ["v:a", "v:b"],
    "consent": True,
}


async def _visit(h: Harness, seq: int, status: str | None = None) -> dict[str, Any] | None:
    doc = await h.db.care_visits.find_one({"recipient_id": "care:t1", "seq": seq})
    if doc is None or (status and doc["status"] != status):
        return None
    return doc


@pytest.mark.parametrize("harness", [FAST_CARE], indirect=True)
async def test_visits_on_cadence_and_an_overdue_alert_survive_a_restart(harness: Harness) -> None:
    h = harness
    http = h.http
    assert http is not None
    # bad input changes nothing
    for bad, loc in (
        ({**RECIPIENT, "compound": "compound:nowhere"}, "compound"),
        ({**RECIPIENT, "community": "community:nowhere"}, "community"),
        ({**RECIPIENT, "assigned_volunteers": ["v:ghost"]}, "assigned_volunteers"),
        ({**RECIPIENT, "consent": False}, "consent"),
        ({**RECIPIENT, "care_type": "vip"}, "care_type"),
    ):
        r = await http.post("/v1/care-recipients", json=bad, headers=h.staff())
        assert r.status_code == 422, bad
        assert r.json()["error"]["details"][0]["loc"][-1] == loc
    r = await http.post("/v1/care-recipients", json=RECIPIENT, headers=h.vol("v:a"))
    assert r.status_code == 403
    assert await h.db.care_recipients.count_documents({}) == 0
    assert await h.db.deadlines.count_documents({}) == 0

    r = await http.post("/v1/care-recipients", json=RECIPIENT, headers=h.staff())
    assert r.status_code == 201, r.text
    dup = await http.post("/v1/care-recipients", json=RECIPIENT, headers=h.staff())
    assert dup.status_code == 409

    # visit 1 falls due at once (before anyone asks); the first assigned volunteer makes it
    v1 = await eventually(lambda: _visit(h, 1, "open"), timeout=10, what="first visit")
    assert v1["volunteer_id"] == "v:a"
    mine = (await http.get("/v1/care-visits", headers=h.vol("v:a"))).json()
    assert [v["id"] for v in mine] == [v1["_id"]]
    assert "name" not in mine[0] and "address" not in mine[0]  # details are staff-only
    assert (await http.get("/v1/care-recipients", headers=h.vol("v:a"))).status_code == 403
    rec = f"/v1/care-visits/{v1['_id']}/record"
    assert (await http.post(rec, json={"hours": 1}, headers=h.vol("v:c"))).status_code == 403
    assert (await http.post(rec, json={"hours": 0}, headers=h.vol("v:a"))).status_code == 422
    r = await http.post(rec, json={"hours": 1, "note": "身体好"}, headers=h.vol("v:a"))
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert (await http.post(rec, json={"hours": 1}, headers=h.vol("v:a"))).status_code == 409

    # restart before visit 2 falls due: the schedule lives in the database
    await h.restart()
    http = h.http
    assert http is not None
    v2 = await eventually(lambda: _visit(h, 2, "overdue"), timeout=20, what="visit 2 overdue")
    assert v2["volunteer_id"] == "v:b"  # the assigned volunteers take turns
    overdue = (await http.get("/v1/care-recipients/overdue", headers=h.staff())).json()
    assert [o["id"] for o in overdue] == [v2["_id"]]
    assert overdue[0]["recipient"]["name"] == "和奶奶" and overdue[0]["overdue_hours"] >= 0
    assert (await http.get("/v1/care-recipients/overdue", headers=h.vol("v:b"))).status_code == 403

    events = await eventually(
        lambda: _overdue_events(h), timeout=20, what="care.visit_overdue published"
    )
    assert [e["visit_id"] for e in events] == [v2["_id"]]
    assert events[0]["request_id"] == "care:care:t1"
    assert (
        events[0]["volunteer_ids"] == ["v:a", "v:b"] and events[0]["care_type"] == "elderly_alone"
    )

    # the cadence continues after a missed visit; the late visit can still be recorded
    await eventually(lambda: _visit(h, 3), timeout=20, what="visit 3 generated")
    r = await http.post(
        f"/v1/care-visits/{v2['_id']}/record", json={"hours": 0.5}, headers=h.vol("v:b")
    )
    assert r.status_code == 200 and r.json()["late"] is True
    assert (await http.get("/v1/care-recipients/overdue", headers=h.staff())).json() == []
    hours = (await http.get("/v1/volunteers/v:b/hours", headers=h.staff())).json()
    assert hours["total_hours"] == 0.5

    # each visit exists once and each overdue check fired once
    seqs = [d["seq"] async for d in h.db.care_visits.find({"recipient_id": "care:t1"})]
    assert len(seqs) == len(set(seqs))
    assert await h.db.deadlines.count_documents({"_id": f"care-overdue:{v2['_id']}"}) == 1
    assert (await h.db.deadlines.find_one({"_id": f"care-overdue:{v2['_id']}"}))[
        "status"
    ] == "fired"

    # deactivating stops the visits
    r = await http.patch("/v1/care-recipients/care:t1", json={"active": False}, headers=h.staff())
    assert r.status_code == 200 and r.json()["active"] is False
    pending = await h.db.deadlines.count_documents(
        {"subject": {"$in": ["care-gen:care:t1", "care-visit:care:t1"]}, "status": "pending"}
    )
    assert pending == 0
    metrics = (await http.get("/metrics")).text
    assert 'tongxin_care_visits_total{outcome="overdue"} 1.0' in metrics
    assert 'tongxin_care_visits_total{outcome="completed_late"} 1.0' in metrics


async def _overdue_events(h: Harness) -> list[dict[str, Any]] | None:
    found = [d for t, d in await h.task_events() if t == "care.visit_overdue"]
    return found or None


async def test_registry_validates_and_changes_nothing_on_bad_input(harness: Harness) -> None:
    h = harness
    http = h.http
    assert http is not None
    good = {
        "id": "vol:new1",
        "name": "新志愿者",
        "phone": "13912345678",
        "skills": ["legal", "convenience"],
        "party_member": True,
        "in_service_unit": "dept:justice",
        "community": "community:liyuan",
        "compound": "compound:fuxing",
        "availability": [{"day": 6, "start": "09:00", "end": "12:00"}],
        "max_tasks": 2,
    }
    before = await h.db.volunteers.count_documents({})
    for bad, loc in (
        ({**good, "skills": ["juggling"]}, ["body", "skills", 0]),
        ({**good, "compound": "compound:nowhere"}, ["body", "compound"]),
        ({**good, "compound": "compound:lanting"}, ["body", "compound"]),  # other community
        ({**good, "availability": [{"day": 1, "start": "18:00", "end": "09:00"}]}, None),
        ({**good, "lat": 40.0, "lng": 116.4}, ["body", "lat"]),
    ):
        r = await http.post("/v1/volunteers", json=bad, headers=h.staff())
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "validation_error"
        if loc:
            assert r.json()["error"]["details"][0]["loc"] == loc
    assert (await http.post("/v1/volunteers", json=good, headers=h.vol("v:a"))).status_code == 403
    assert await h.db.volunteers.count_documents({}) == before

    r = await http.post("/v1/volunteers", json=good, headers=h.staff())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == "vol:new1" and created["lat"] == 26.6843  # the compound's point
    assert (await http.post("/v1/volunteers", json=good, headers=h.staff())).status_code == 409
    auto = await http.post("/v1/volunteers", json={**good, "id": None}, headers=h.staff())
    assert auto.status_code == 201 and auto.json()["id"].startswith("vol:")

    # a volunteer changes their own availability, nothing else, and nobody else's
    me = h.vol("vol:new1")
    r = await http.patch(
        "/v1/volunteers/vol:new1",
        json={"availability": [{"day": 2, "start": "19:00", "end": "21:00"}]},
        headers=me,
    )
    assert r.status_code == 200 and r.json()["availability"][0]["day"] == 2
    assert (
        await http.patch("/v1/volunteers/vol:new1", json={"max_tasks": 9}, headers=me)
    ).status_code == 403
    assert (
        await http.patch("/v1/volunteers/v:a", json={"availability": []}, headers=me)
    ).status_code == 403
    r = await http.patch("/v1/volunteers/vol:new1", json={"skills": ["nope"]}, headers=h.staff())
    assert r.status_code == 422
    assert (await http.get("/v1/volunteers/vol:new1", headers=me)).json()["skills"] == [
        "legal",
        "convenience",
    ]
    listed = (await http.get("/v1/volunteers?skill=legal", headers=h.staff())).json()
    assert {v["id"] for v in listed} >= {"vol:new1", "v:legal"}
    assert (await http.get("/v1/volunteers?skill=juggling", headers=h.staff())).status_code == 422
    assert (await http.get("/v1/volunteers", headers=me)).status_code == 403

    # squads: the captain must be an active volunteer with the squad's skill
    squads = (await http.get("/v1/squads", headers=me)).json()
    elder = next(s for s in squads if s["id"] == "squad:elder_care")
    assert elder["captain_id"] == "v:a" and elder["member_count"] == 3
    r = await http.patch("/v1/squads/squad:legal", json={"captain_id": "v:a"}, headers=h.staff())
    assert r.status_code == 422
    r = await http.patch(
        "/v1/squads/squad:legal", json={"captain_id": "vol:new1"}, headers=h.staff()
    )
    assert r.status_code == 200 and r.json()["captain_id"] == "vol:new1"
    r = await http.post(
        "/v1/squads", json={"name": "便民类小分队", "skill": "convenience"}, headers=h.staff()
    )
    assert r.status_code == 201 and r.json()["id"] == "squad:convenience"
    brigade = (await http.get("/v1/brigade", headers=me)).json()
    assert brigade["leader"] == "杨书记" and len(brigade["squads"]) == 3

    # deactivation keeps the record but takes them out of matching
    r = await http.delete("/v1/volunteers/vol:new1", headers=h.staff())
    assert r.status_code == 200 and r.json()["active"] is False
