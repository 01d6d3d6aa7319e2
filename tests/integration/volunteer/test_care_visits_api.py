"""GET /v1/care-recipients/{id}/visits: a recipient's visit history, newest first, with what
was recorded — staff only, community staff only for their community (404 otherwise)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.volunteer.conftest import Harness
from tests.support import eventually
from tongxin.runtime.auth import Role, mint_token

# one cadence "day" is 0.3 s: a recipient visited daily gets a new visit every 0.3 s, so a
# few exist within a second or two (the schedule's own timetable)
FAST_CARE = {"care_day_s": 0.3, "care_visit_window_s": 0.3}
LIYUAN = {
    "id": "care:ly1",
    "name": "和奶奶",
    "care_type": "elderly_alone",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "address": "金苑小区3栋102",
    "phone": "13908871001",
    "cadence_days": 1,
    "assigned_volunteers": ["v:a", "v:b"],
    "consent": True,
}
CHENGDONG = {
    **LIYUAN,
    "id": "care:cd1",
    "name": "李爷爷",
    "community": "community:chengdong",
    "compound": "compound:dongsheng",
    "address": "东升小区1栋201",
    "assigned_volunteers": ["v:c"],
}


def token(h: Harness, role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    t = mint_token(h.settings.jwt_secret, sub=sub, role=role, unit=unit)
    return {"authorization": f"Bearer {t}"}


async def _visits_in_db(h: Harness, rid: str) -> list[dict[str, Any]]:
    return [d async for d in h.db.care_visits.find({"recipient_id": rid}).sort("seq", -1)]


@pytest.mark.parametrize("harness", [FAST_CARE], indirect=True)
async def test_a_recipients_visits_newest_first_with_what_was_recorded(harness: Harness) -> None:
    h = harness
    http = h.http
    assert http is not None
    for body in (LIYUAN, CHENGDONG):
        r = await http.post("/v1/care-recipients", json=body, headers=h.staff())
        assert r.status_code == 201, r.text

    async def several() -> bool:
        return len(await _visits_in_db(h, "care:ly1")) >= 3 and bool(
            await _visits_in_db(h, "care:cd1")
        )

    await eventually(several, timeout=30, what="three visits of care:ly1, one of care:cd1")
    first = "care:ly1"
    [v1] = [v for v in await _visits_in_db(h, first) if v["seq"] == 1]
    r = await http.post(
        f"/v1/care-visits/{v1['_id']}/record",
        json={"hours": 1.5, "note": "身体好，已送米面油"},
        headers=h.vol("v:a"),
    )
    assert r.status_code == 200, r.text
    # stop the schedule so the history holds still (open visits are cancelled)
    for rid in ("care:ly1", "care:cd1"):
        r = await http.patch(
            f"/v1/care-recipients/{rid}", json={"active": False}, headers=h.staff()
        )
        assert r.status_code == 200, r.text

    r = await http.get("/v1/care-recipients/care:ly1/visits", headers=h.staff())
    assert r.status_code == 200, r.text
    visits = r.json()
    stored = await _visits_in_db(h, "care:ly1")
    assert [v["id"] for v in visits] == [d["_id"] for d in stored]
    # newest first, every visit once, only this recipient's
    assert [v["seq"] for v in visits] == list(range(len(stored), 0, -1))
    assert len(visits) >= 3
    assert {v["recipient_id"] for v in visits} == {"care:ly1"}
    # the assigned volunteers take turns; what was recorded is there for staff
    assert [v["volunteer_id"] for v in reversed(visits)][:3] == ["v:a", "v:b", "v:a"]
    made = visits[-1]
    assert made["seq"] == 1 and made["status"] == "completed"
    assert made["note"] == "身体好，已送米面油" and made["hours"] == 1.5
    assert made["visited_by"] == "v:a" and made["recorded_by"] == "v:a"
    assert {v["status"] for v in visits[:-1]} <= {"overdue", "cancelled"}

    other = await http.get("/v1/care-recipients/care:cd1/visits", headers=h.staff())
    assert other.status_code == 200, other.text
    assert {v["recipient_id"] for v in other.json()} == {"care:cd1"}
    assert [v["id"] for v in other.json()] == [d["_id"] for d in await _visits_in_db(h, "care:cd1")]


@pytest.mark.parametrize("harness", [FAST_CARE], indirect=True)
async def test_only_staff_of_the_recipients_community_read_its_visits(harness: Harness) -> None:
    h = harness
    http = h.http
    assert http is not None
    for body in (LIYUAN, CHENGDONG):
        r = await http.post("/v1/care-recipients", json=body, headers=h.staff())
        assert r.status_code == 201, r.text

    async def first_visits() -> bool:
        return all([await _visits_in_db(h, "care:ly1"), await _visits_in_db(h, "care:cd1")])

    await eventually(first_visits, timeout=30, what="each recipient's first visit")
    path = "/v1/care-recipients/care:ly1/visits"
    liyuan_staff = token(h, Role.STAFF, "staff-liyuan", "community:liyuan")
    chengdong_staff = token(h, Role.STAFF, "staff-chengdong", "community:chengdong")
    for headers in (h.staff(), token(h, Role.ADMIN, "admin-1"), liyuan_staff):
        r = await http.get(path, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() and {v["recipient_id"] for v in r.json()} == {"care:ly1"}
    # another community's recipient reads like an unknown one
    hidden = await http.get(path, headers=chengdong_staff)
    unknown = await http.get("/v1/care-recipients/care:nobody/visits", headers=chengdong_staff)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    r = await http.get("/v1/care-recipients/care:cd1/visits", headers=chengdong_staff)
    assert r.status_code == 200 and {v["recipient_id"] for v in r.json()} == {"care:cd1"}
    # an assigned volunteer, a department, a platform: not the registry's readers
    for headers in (
        h.vol("v:a"),
        token(h, Role.DEPARTMENT, "civil-1", "dept:civil-affairs"),
        token(h, Role.PLATFORM, "hotline-12345"),
    ):
        r = await http.get(path, headers=headers)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
    anon = await http.get(path)
    assert anon.status_code == 401 and anon.json()["error"]["code"] == "unauthorized"
