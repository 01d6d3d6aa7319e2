"""The brigade's squads and the brigade itself over HTTP: GET /v1/squads/{id} (members for
staff, the size for any token) and PATCH /v1/brigade (staff; bad input is a 422 that
changes nothing; a change is what everyone reads afterwards)."""

from __future__ import annotations

from typing import Any

from tests.integration.volunteer.conftest import ALWAYS, Harness
from tongxin.runtime.auth import Role, mint_token


def token(h: Harness, role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    t = mint_token(h.settings.jwt_secret, sub=sub, role=role, unit=unit)
    return {"authorization": f"Bearer {t}"}


def member(vid: str, name: str, party_member: bool = False) -> dict[str, Any]:
    return {"id": vid, "name": name, "party_member": party_member}


async def test_a_squad_lists_its_members_to_staff_and_its_size_to_any_token(
    harness: Harness,
) -> None:
    h = harness
    http = h.http
    assert http is not None
    elder = "/v1/squads/squad:elder_care"
    r = await http.get(elder, headers=h.staff())
    assert r.status_code == 200, r.text
    squad = r.json()
    assert {k: squad[k] for k in ("id", "name", "skill", "captain_id", "member_count")} == {
        "id": "squad:elder_care",
        "name": "助老小分队",
        "skill": "elder_care",
        "captain_id": "v:a",
        "member_count": 3,
    }
    # the active volunteers with the squad's skill, by id; v:legal has another skill
    assert squad["members"] == [member("v:a", "甲"), member("v:b", "乙"), member("v:c", "丙")]
    admin = await http.get(elder, headers=token(h, Role.ADMIN, "admin-1"))
    assert admin.status_code == 200 and admin.json()["members"] == squad["members"]
    legal = await http.get("/v1/squads/squad:legal", headers=h.staff())
    assert legal.status_code == 200, legal.text
    assert legal.json()["members"] == [member("v:legal", "丁")]
    assert legal.json()["member_count"] == 1 and legal.json().get("captain_id") is None

    # any other token: the squad and its size, not who is in it
    for headers in (
        h.vol("v:legal"),
        token(h, Role.DEPARTMENT, "civil-1", "dept:civil-affairs"),
        token(h, Role.PLATFORM, "hotline-12345"),
    ):
        r = await http.get(elder, headers=headers)
        assert r.status_code == 200, r.text
        assert "members" not in r.json()
        assert r.json()["member_count"] == 3 and r.json()["name"] == "助老小分队"

    # no token, a forged one, an unknown squad
    assert (await http.get(elder)).status_code == 401
    forged = {"authorization": f"Bearer {mint_token('x' * 40, sub='s', role=Role.STAFF)}"}
    assert (await http.get(elder, headers=forged)).status_code == 401
    missing = await http.get("/v1/squads/squad:juggling", headers=h.staff())
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"

    # the members follow the registry: a new elder-care volunteer joins, a deactivated leaves
    new = {
        "id": "v:d",
        "name": "戊",
        "skills": ["elder_care", "legal"],
        "party_member": True,
        "community": "community:liyuan",
        "compound": "compound:jinyuan",
        "availability": ALWAYS,
    }
    assert (await http.post("/v1/volunteers", json=new, headers=h.staff())).status_code == 201
    assert (await http.delete("/v1/volunteers/v:b", headers=h.staff())).status_code == 200
    after = (await http.get(elder, headers=h.staff())).json()
    assert after["members"] == [member("v:a", "甲"), member("v:c", "丙"), member("v:d", "戊", True)]
    assert after["member_count"] == 3
    mine = (await http.get(elder, headers=h.vol("v:a"))).json()
    assert mine["member_count"] == 3 and "members" not in mine


async def _brigade(h: Harness) -> dict[str, Any]:
    doc = await h.db.brigade.find_one({"_id": "brigade"})
    assert doc is not None
    return doc


BAD_BRIGADE: list[tuple[Any, list[str]]] = [
    ({"name": ""}, ["body", "name"]),
    ({"name": "   "}, ["body", "name"]),  # trimmed to nothing
    ({"leader": "杨" * 41}, ["body", "leader"]),
    ({"leader_title": 7}, ["body", "leader_title"]),
    ({"motto": "团结"}, ["body", "motto"]),  # unknown field
    ({"name": "新名字", "captain": "v:a"}, ["body", "captain"]),  # nothing of it is applied
    ([], ["body"]),
]


async def test_bad_brigade_changes_are_422_and_change_nothing(harness: Harness) -> None:
    h = harness
    http = h.http
    assert http is not None
    before = await _brigade(h)
    for body, loc in BAD_BRIGADE:
        r = await http.patch("/v1/brigade", json=body, headers=h.staff())
        assert r.status_code == 422, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == "validation_error"
        assert loc in [d["loc"] for d in err["details"]], (body, err)
        assert await _brigade(h) == before, body
    seen = (await http.get("/v1/brigade", headers=h.staff())).json()
    assert seen["name"] == "测试红马甲服务队" and seen["leader"] == "杨书记"


async def test_only_staff_change_the_brigade_and_everyone_reads_the_change(
    harness: Harness,
) -> None:
    h = harness
    http = h.http
    assert http is not None
    before = await _brigade(h)
    assert before["name"] == "测试红马甲服务队" and before["leader"] == "杨书记"
    change = {"name": "永北镇红马甲服务队", "leader": "李书记"}
    for headers, status in (
        ({}, 401),
        (h.vol("v:a"), 403),
        (token(h, Role.DEPARTMENT, "civil-1", "dept:civil-affairs"), 403),
        (token(h, Role.PLATFORM, "hotline-12345"), 403),
    ):
        r = await http.patch("/v1/brigade", json=change, headers=headers)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == ("unauthorized" if status == 401 else "forbidden")
        assert await _brigade(h) == before

    r = await http.patch("/v1/brigade", json=change, headers=h.staff())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["name"] == "永北镇红马甲服务队" and answer["leader"] == "李书记"
    assert [s["id"] for s in answer["squads"]] == ["squad:elder_care", "squad:legal"]
    assert answer["active_volunteers"] == 4
    # a later change of one field keeps the others (admin may too)
    r = await http.patch(
        "/v1/brigade", json={"leader_title": "党委书记"}, headers=token(h, Role.ADMIN, "admin-1")
    )
    assert r.status_code == 200, r.text
    # null is no change: it does not erase the name
    r = await http.patch("/v1/brigade", json={"name": None}, headers=h.staff())
    assert r.status_code < 500, r.text
    for headers in (h.vol("v:legal"), h.staff()):
        seen = (await http.get("/v1/brigade", headers=headers)).json()
        assert {k: seen.get(k) for k in ("name", "leader", "leader_title")} == {
            "name": "永北镇红马甲服务队",
            "leader": "李书记",
            "leader_title": "党委书记",
        }
