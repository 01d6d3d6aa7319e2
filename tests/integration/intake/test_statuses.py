"""GET /v1/statuses: the statuses a request moves through, with the Chinese names residents
see — open to anyone, and the same names a request's own view shows."""

from __future__ import annotations

from tests.integration.intake.conftest import Intake
from tongxin.runtime.auth import Role

# docs/intake.md "Status and timeline", in the order the endpoint serves them
STATUSES = [
    {"code": "submitted", "name": "已受理"},
    {"code": "routed", "name": "已派单"},
    {"code": "acknowledged", "name": "已接单"},
    {"code": "in_progress", "name": "办理中"},
    {"code": "returned", "name": "重新派单中"},
    {"code": "resolved", "name": "已办结待评价"},
    {"code": "reopened", "name": "重新办理中"},
    {"code": "closed", "name": "已办结"},
    {"code": "withdrawn", "name": "已撤回"},
]


async def test_statuses_are_listed_with_their_chinese_names_to_anyone(intake: Intake) -> None:
    anon = await intake.http.get("/v1/statuses")
    assert anon.status_code == 200, anon.text
    assert anon.json() == STATUSES
    # public reference data: every kind of caller gets the same answer
    for role, unit in (
        (Role.STAFF, "community:liyuan"),
        (Role.ADMIN, None),
        (Role.DEPARTMENT, "dept:justice"),
        (Role.VOLUNTEER, None),
        (Role.PLATFORM, None),
    ):
        r = await intake.http.get("/v1/statuses", headers=intake.staff(role, unit))
        assert r.status_code == 200 and r.json() == STATUSES, (role, r.text)


async def test_a_request_shows_the_listed_name_of_its_status(intake: Intake) -> None:
    names = {s["code"]: s["name"] for s in (await intake.http.get("/v1/statuses")).json()}
    created = await intake.new_request()
    rid, code = created["id"], created["tracking_code"]
    mine = await intake.http.get(f"/v1/requests/{rid}", params={"tracking_code": code})
    assert mine.status_code == 200, mine.text
    assert mine.json()["status"] == "submitted"  # no routing runs in these tests
    assert mine.json()["status_name"] == names["submitted"] == "已受理"
    r = await intake.http.post(
        f"/v1/requests/{rid}/withdraw", json={"tracking_code": code, "reason": "已自行解决"}
    )
    assert r.status_code == 200, r.text
    resident = await intake.http.get(f"/v1/requests/{rid}", params={"tracking_code": code})
    staff = await intake.view(rid)
    for view in (resident.json(), staff):
        assert view["status"] == "withdrawn"
        assert view["status_name"] == names["withdrawn"] == "已撤回"
