"""The authorization matrix (role × resource × action → allowed / denied, with the right
status) of intake, routing, volunteer and notify, running in-process on the real stack.

Every deny is checked to change nothing; every route is checked to be denied to anonymous
callers unless it is declared public (deny by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.security.conftest import Services
from tests.integration.volunteer.conftest import routed
from tests.support import eventually, unique
from tongxin.contracts.topics import CASES

BODY: dict[str, Any] = {
    "channel": "app",
    "category": "public_facilities",
    "title": "路灯不亮",
    "description": "3栋门口的路灯坏了一个多星期，晚上出行很不方便。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "张秀英", "phone": "13812341234"},
    "attributes": {"facility": "street_light"},
}
CHENGDONG = {"community": "community:chengdong", "compound": "compound:dongsheng"}
RECIPIENT = {
    "name": "和奶奶",
    "care_type": "elderly_alone",
    "address": "金苑小区3栋102",
    "phone": "13908871001",
    "cadence_days": 7,
    "assigned_volunteers": ["v:a"],
    "consent": True,
}

# Routes anyone may call without a token; everything else must answer 401 (deny by default).
PUBLIC = {
    "intake": {
        ("GET", "/v1/categories"),
        ("GET", "/v1/statuses"),
        ("GET", "/v1/compounds"),
        ("POST", "/v1/requests"),  # anonymous submission (rate-limited in production)
        ("GET", "/open311/v2/services.json"),
        ("GET", "/open311/v2/services/{service_code}.json"),
        ("POST", "/open311/v2/requests.json"),
        # GeoReport reads are public: the public view, no text, place or contact
        ("GET", "/open311/v2/requests.json"),
        ("GET", "/open311/v2/requests/{request_id}.json"),
        # a resident with the tracking code: a body without a rating is 422 before the code
        # is looked at; with one and no code it is 401 (the deny rows above)
        ("POST", "/v1/requests/{request_id}/feedback"),
        # signing in and out (tongxin/accounts): name and password are the credentials
        ("POST", "/v1/session"),
        ("POST", "/v1/session/password"),
        ("DELETE", "/v1/session"),
        # the identity provider's way in (404 while it is not configured): whether it is
        # on, leaving for the provider, coming back with its code (tongxin/accounts/oidc.py)
        ("GET", "/v1/session/oidc"),
        ("GET", "/v1/session/oidc/login"),
        ("GET", "/v1/session/oidc/callback"),
    },
    "routing": {("GET", "/v1/units"), ("GET", "/v1/policy")},
    "volunteer": set(),
    "notify": {("GET", "/v1/channels")},  # channel configuration and health, no recipients
}
# at least this many routes of each service need a token (the schema was really read)
GUARDED_AT_LEAST = {"intake": 4, "routing": 5, "volunteer": 5, "notify": 3}
OPERATIONS = {"/healthz", "/readyz", "/metrics"}


@dataclass
class World:
    """The objects the matrix probes."""

    ids: dict[str, str]


async def _submit(s: Services, headers: dict[str, str] | None = None, **over: str) -> Any:
    body = {**BODY, "title": unique("路灯"), "description": unique("灯坏了很久了请修"), **over}
    r = await s.intake.post("/v1/requests", json=body, headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
async def world(services: Services) -> World:
    s = services
    ids: dict[str, str] = {}
    mine = await _submit(s)
    ids |= {"req": mine["id"], "code": mine["tracking_code"]}
    ids["req_p1"] = (await _submit(s, s.auth("platform_1")))["id"]
    ids["req_cd"] = (await _submit(s, None, **CHENGDONG))["id"]
    ids["req_w"], ids["code_w"] = (w := await _submit(s))["id"], w["tracking_code"]
    # intake → routing over the requests topic: the cases open by themselves
    for key in ("req", "req_cd"):
        case_id = f"C-{ids[key]}"

        async def opened(cid: str = case_id) -> Any:
            return await s.db("routing").cases.find_one({"_id": cid})

        await eventually(opened, timeout=30, what=f"case {case_id}")
        ids[key.replace("req", "case")] = case_id
    r = await s.routing.post(
        f"/v1/cases/{ids['case']}/whistle",
        json={"units": ["dept:civil-affairs"], "reason": "需要民政局"},
        headers=s.auth("staff_town"),
    )
    assert r.status_code == 200, r.text
    # volunteer: a routed case that needs a volunteer → a task offered to v:a
    ids["vcase"] = unique("C-SEC-")
    await s.publish(CASES.name, routed(ids["vcase"]))

    async def offered() -> Any:
        return await s.db("volunteer").tasks.find_one(
            {"case_id": ids["vcase"], "status": "offered"}
        )

    task = await eventually(offered, timeout=30, what="task offered")
    assert task["volunteer_id"] == "v:a"
    ids["task"] = task["_id"]
    for key, community in (("care", "community:liyuan"), ("care_cd", "community:chengdong")):
        body = {**RECIPIENT, "id": f"care:{unique('s')}", "community": community}
        r = await s.volunteer.post("/v1/care-recipients", json=body, headers=s.auth("staff_town"))
        assert r.status_code == 201, r.text
        ids[key] = r.json()["id"]
    return World(ids)


# notify preference bodies the recipients named in the rows could take
SMS: dict[str, Any] = {"channels": ["sms"]}
EMAIL: dict[str, Any] = {"channels": ["email"]}
WEBHOOK: dict[str, Any] = {"channels": ["webhook"]}

# (who, service, method, path, body, expected status)
Row = tuple[str, str, str, str, dict[str, Any] | None, int]
DENIES: list[Row] = [
    # --- intake: requests -----------------------------------------------------------------
    ("anon", "intake", "GET", "/v1/requests", None, 401),
    ("forged", "intake", "GET", "/v1/requests", None, 401),
    ("expired", "intake", "GET", "/v1/requests", None, 401),
    ("vol_a", "intake", "GET", "/v1/requests", None, 403),
    ("dept_civil", "intake", "GET", "/v1/requests", None, 403),
    ("anon", "intake", "GET", "/v1/requests/{req}", None, 401),
    ("anon", "intake", "GET", "/v1/requests/{req}?tracking_code=wrong-code-123", None, 404),
    ("anon", "intake", "GET", "/v1/requests/YS-20000101-999999?tracking_code={code}", None, 404),
    ("forged", "intake", "GET", "/v1/requests/{req}", None, 401),
    ("dept_civil", "intake", "GET", "/v1/requests/{req}", None, 403),
    ("vol_a", "intake", "GET", "/v1/requests/{req}", None, 403),
    ("staff_chengdong", "intake", "GET", "/v1/requests/{req}", None, 404),
    ("platform_1", "intake", "GET", "/v1/requests/{req}", None, 404),
    ("platform_2", "intake", "GET", "/v1/requests/{req_p1}", None, 404),
    ("anon", "intake", "POST", "/v1/requests/{req}/withdraw", {"tracking_code": "nope"}, 404),
    ("staff_chengdong", "intake", "POST", "/v1/requests/{req}/withdraw", {}, 404),
    ("vol_a", "intake", "POST", "/v1/requests/{req}/withdraw", {}, 403),
    ("anon", "intake", "POST", "/v1/requests/{req}/feedback", {"rating": "satisfied"}, 401),
    (
        "staff_chengdong",
        "intake",
        "POST",
        "/v1/requests/{req}/feedback",
        {"rating": "dissatisfied"},
        404,
    ),
    ("anon", "intake", "DELETE", "/v1/requests/{req}/duplicate-link", None, 401),
    ("vol_a", "intake", "DELETE", "/v1/requests/{req}/duplicate-link", None, 403),
    ("staff_chengdong", "intake", "DELETE", "/v1/requests/{req}/duplicate-link", None, 404),
    ("staff_chengdong", "intake", "GET", "/open311/v2/requests/{req}.json", None, 404),
    # --- routing: cases -------------------------------------------------------------------
    ("anon", "routing", "GET", "/v1/cases", None, 401),
    ("forged", "routing", "GET", "/v1/cases", None, 401),
    ("vol_a", "routing", "GET", "/v1/cases", None, 403),
    ("dept_no_unit", "routing", "GET", "/v1/cases", None, 403),
    ("anon", "routing", "GET", "/v1/cases/{case}", None, 401),
    ("vol_a", "routing", "GET", "/v1/cases/{case}", None, 403),
    ("platform_1", "routing", "GET", "/v1/cases/{case}", None, 403),
    ("dept_justice", "routing", "GET", "/v1/cases/{case}", None, 404),
    ("dept_justice", "routing", "GET", "/v1/cases/C-NO-SUCH-CASE", None, 404),
    ("staff_chengdong", "routing", "GET", "/v1/cases/{case}", None, 404),
    ("dept_civil", "routing", "GET", "/v1/cases/{case_cd}", None, 404),
    ("anon", "routing", "POST", "/v1/cases/{case}/acknowledge", None, 401),
    ("dept_justice", "routing", "POST", "/v1/cases/{case}/acknowledge", None, 404),
    ("dept_justice", "routing", "POST", "/v1/cases/{case}/resolve", {"note": "x"}, 404),
    ("dept_justice", "routing", "POST", "/v1/cases/{case}/return", {"reason": "x"}, 404),
    ("dept_justice", "routing", "POST", "/v1/cases/C-NO-SUCH-CASE/acknowledge", None, 404),
    (
        "dept_civil",
        "routing",
        "POST",
        "/v1/cases/{case}/acknowledge",
        {"unit": "community:liyuan"},
        403,
    ),
    ("staff_chengdong", "routing", "POST", "/v1/cases/{case}/acknowledge", None, 404),
    ("dept_civil", "routing", "POST", "/v1/cases/{case_cd}/progress", {"note": "x"}, 404),
    ("vol_a", "routing", "POST", "/v1/cases/{case}/progress", {"note": "x"}, 403),
    ("dept_civil", "routing", "POST", "/v1/cases/{case}/whistle", {"units": ["dept:justice"]}, 403),
    (
        "staff_liyuan",
        "routing",
        "POST",
        "/v1/cases/{case}/whistle",
        {"units": ["dept:justice"]},
        403,
    ),
    (
        "dept_civil",
        "routing",
        "POST",
        "/v1/cases/{case}/reassign",
        {"units": ["dept:justice"]},
        403,
    ),
    (
        "staff_liyuan",
        "routing",
        "POST",
        "/v1/cases/{case}/reassign",
        {"units": ["dept:justice"]},
        403,
    ),
    (
        "dept_civil",
        "routing",
        "POST",
        "/v1/meetings/2030-01-01/decisions",
        {"case_id": "{case}", "decision": "x", "units": ["dept:justice"]},
        403,
    ),
    ("anon", "routing", "GET", "/v1/stats/units", None, 401),
    ("vol_a", "routing", "GET", "/v1/stats/units", None, 403),
    ("anon", "routing", "GET", "/v1/meetings/next", None, 401),
    ("vol_a", "routing", "GET", "/v1/meetings/next", None, 403),
    # --- volunteer: tasks, registry, special care ----------------------------------------
    ("anon", "volunteer", "GET", "/v1/tasks", None, 401),
    ("dept_civil", "volunteer", "GET", "/v1/tasks", None, 403),
    ("platform_1", "volunteer", "GET", "/v1/tasks", None, 403),
    ("vol_b", "volunteer", "GET", "/v1/tasks/{task}", None, 403),
    ("dept_civil", "volunteer", "GET", "/v1/tasks/{task}", None, 403),
    ("anon", "volunteer", "POST", "/v1/tasks/{task}/accept", None, 401),
    ("vol_b", "volunteer", "POST", "/v1/tasks/{task}/accept", None, 403),
    ("vol_b", "volunteer", "POST", "/v1/tasks/{task}/decline", None, 403),
    ("staff_town", "volunteer", "POST", "/v1/tasks/{task}/accept", None, 403),
    ("dept_civil", "volunteer", "POST", "/v1/tasks/{task}/accept", None, 403),
    ("vol_b", "volunteer", "POST", "/v1/tasks/{task}/complete", {"hours": 1}, 403),
    ("dept_civil", "volunteer", "POST", "/v1/tasks/{task}/complete", {"hours": 1}, 403),
    ("vol_a", "volunteer", "GET", "/v1/volunteers", None, 403),
    ("dept_civil", "volunteer", "GET", "/v1/volunteers", None, 403),
    ("vol_b", "volunteer", "GET", "/v1/volunteers/v:a", None, 403),
    ("vol_b", "volunteer", "GET", "/v1/volunteers/v:a/hours", None, 403),
    ("vol_b", "volunteer", "PATCH", "/v1/volunteers/v:a", {"availability": []}, 403),
    ("vol_a", "volunteer", "PATCH", "/v1/volunteers/v:a", {"max_tasks": 9}, 403),
    ("vol_a", "volunteer", "DELETE", "/v1/volunteers/v:b", None, 403),
    ("vol_a", "volunteer", "POST", "/v1/squads", {"name": "x", "skill": "legal"}, 403),
    ("anon", "volunteer", "GET", "/v1/squads", None, 401),
    ("anon", "volunteer", "GET", "/v1/care-recipients", None, 401),
    ("vol_a", "volunteer", "GET", "/v1/care-recipients", None, 403),
    ("dept_civil", "volunteer", "GET", "/v1/care-recipients", None, 403),
    ("vol_a", "volunteer", "GET", "/v1/care-recipients/{care}", None, 403),
    ("staff_chengdong", "volunteer", "GET", "/v1/care-recipients/{care}", None, 404),
    ("staff_chengdong", "volunteer", "GET", "/v1/care-recipients/{care}/visits", None, 404),
    (
        "staff_chengdong",
        "volunteer",
        "PATCH",
        "/v1/care-recipients/{care}",
        {"cadence_days": 1},
        404,
    ),
    (
        "staff_chengdong",
        "volunteer",
        "POST",
        "/v1/care-recipients",
        {**RECIPIENT, "community": "community:liyuan"},
        403,
    ),
    ("vol_a", "volunteer", "GET", "/v1/care-recipients/overdue", None, 403),
    ("dept_civil", "volunteer", "GET", "/v1/care-visits", None, 403),
    # --- notify: deliveries and preferences -----------------------------------------------
    ("anon", "notify", "GET", "/v1/notifications", None, 401),
    ("forged", "notify", "GET", "/v1/notifications", None, 401),
    ("expired", "notify", "GET", "/v1/notifications", None, 401),
    ("platform_1", "notify", "GET", "/v1/notifications", None, 403),
    ("dept_no_unit", "notify", "GET", "/v1/notifications", None, 403),
    ("vol_a", "notify", "GET", "/v1/notifications?recipient=volunteer:v:b", None, 403),
    ("vol_a", "notify", "GET", "/v1/notifications?recipient=staff:duty", None, 403),
    ("dept_civil", "notify", "GET", "/v1/notifications?recipient=dept:justice", None, 403),
    ("dept_civil", "notify", "GET", "/v1/notifications?recipient=community:liyuan", None, 403),
    (
        "dept_justice",
        "notify",
        "GET",
        "/v1/notifications?recipient=liaison:dept:civil-affairs",
        None,
        403,
    ),
    ("anon", "notify", "GET", "/v1/preferences/liaison:dept:justice", None, 401),
    ("forged", "notify", "GET", "/v1/preferences/liaison:dept:justice", None, 401),
    ("vol_a", "notify", "GET", "/v1/preferences/volunteer:vol:001", None, 403),
    ("dept_civil", "notify", "GET", "/v1/preferences/liaison:dept:justice", None, 403),
    ("platform_1", "notify", "GET", "/v1/preferences/staff:duty", None, 403),
    ("dept_no_unit", "notify", "GET", "/v1/preferences/staff:duty", None, 403),
    ("anon", "notify", "PUT", "/v1/preferences/liaison:dept:justice", SMS, 401),
    ("expired", "notify", "PUT", "/v1/preferences/liaison:dept:justice", SMS, 401),
    ("vol_a", "notify", "PUT", "/v1/preferences/volunteer:vol:001", SMS, 403),
    ("vol_b", "notify", "PUT", "/v1/preferences/volunteer:v:a", SMS, 403),
    ("dept_civil", "notify", "PUT", "/v1/preferences/liaison:dept:justice", SMS, 403),
    ("dept_justice", "notify", "PUT", "/v1/preferences/dept:civil-affairs", EMAIL, 403),
    ("platform_1", "notify", "PUT", "/v1/preferences/staff:duty", WEBHOOK, 403),
    ("dept_no_unit", "notify", "PUT", "/v1/preferences/staff:duty", WEBHOOK, 403),
]


def _fill(text: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), m.group(0)), text)


def _fill_body(body: dict[str, Any] | None, ids: dict[str, str]) -> dict[str, Any] | None:
    if body is None:
        return None
    return {k: _fill(v, ids) if isinstance(v, str) else v for k, v in body.items()}


async def _snapshot(s: Services, ids: dict[str, str]) -> dict[str, Any]:
    """What a denied probe must not change."""
    strip = ("timeline",)
    req = await s.db("intake").requests.find_one({"_id": ids["req"]})
    case = await s.db("routing").cases.find_one({"_id": ids["case"]})
    task = await s.db("volunteer").tasks.find_one({"_id": ids["task"]})
    care = await s.db("volunteer").care_recipients.find_one({"_id": ids["care"]})
    vol = await s.db("volunteer").volunteers.find_one({"_id": "v:a"})
    prefs = [d async for d in s.db("notify").preferences.find({}).sort("_id", 1)]
    return {
        "req": {k: v for k, v in (req or {}).items() if k not in strip},
        "case": {k: case[k] for k in ("status", "units", "rev") if case and k in case},
        "task": {k: task[k] for k in ("status", "volunteer_id") if task},
        "care": {k: (care or {}).get(k) for k in CARE_FIELDS},
        "vol": {k: (vol or {}).get(k) for k in ("name", "availability", "max_tasks", "active")},
        "prefs": prefs,
    }


CARE_FIELDS = ("name", "community", "cadence_days", "assigned_volunteers", "active", "phone")
DENY_CODES = {401: {"unauthorized"}, 404: {"not_found"}, 403: {"forbidden", "not_your_task"}}


@pytest.mark.parametrize("row", DENIES, ids=lambda r: f"{r[0]}-{r[2]}-{r[3]}")
async def test_denied(services: Services, world: World, row: Row) -> None:
    who, service, method, path, body, expected = row
    before = await _snapshot(services, world.ids)

    r = await services.client(service).request(
        method,
        _fill(path, world.ids),
        json=_fill_body(body, world.ids),
        headers=services.auth(who),
    )

    assert r.status_code == expected, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message", "details"}
    assert err["code"] in DENY_CODES[expected], err
    assert "units" not in str(err.get("details"))  # a deny does not describe the object
    assert await _snapshot(services, world.ids) == before


async def test_wrong_code_is_indistinguishable_from_unknown_id(
    services: Services, world: World
) -> None:
    ids = world.ids
    wrong = await services.intake.get(f"/v1/requests/{ids['req']}?tracking_code=x{ids['code']}")
    unknown = await services.intake.get(
        f"/v1/requests/YS-20000101-999999?tracking_code={ids['code']}"
    )
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json()
    assert len(ids["code"]) * 6 >= 80  # base64url: 6 bits a character


async def test_case_outside_scope_is_indistinguishable_from_unknown_id(
    services: Services, world: World
) -> None:
    """Reads and actions on a case the caller may not see answer exactly like a missing id."""
    ids = world.ids
    for who in ("dept_justice", "staff_chengdong"):
        h = services.auth(who)
        for method, suffix, body in (
            ("GET", "", None),
            ("POST", "/acknowledge", None),
            ("POST", "/progress", {"note": "x"}),
            ("POST", "/return", {"reason": "x"}),
        ):
            hidden = await services.routing.request(
                method, f"/v1/cases/{ids['case']}{suffix}", json=body, headers=h
            )
            unknown = await services.routing.request(
                method, f"/v1/cases/C-NO-SUCH-CASE{suffix}", json=body, headers=h
            )
            assert hidden.status_code == unknown.status_code == 404, (who, suffix, hidden.text)
            assert hidden.json() == unknown.json()


async def test_intake_reads_are_scoped(services: Services, world: World) -> None:
    s, ids = services, world.ids
    # the resident: masked, no street address
    r = await s.intake.get(f"/v1/requests/{ids['req']}?tracking_code={ids['code']}")
    assert r.status_code == 200
    assert r.json()["submitter"] == {"name": "张**", "phone": "138****1234", "party_member": False}
    # staff of the community, town staff and admins: whole
    for who in ("staff_liyuan", "staff_town", "admin"):
        r = await s.intake.get(f"/v1/requests/{ids['req']}", headers=s.auth(who))
        assert r.status_code == 200 and r.json()["submitter"]["phone"] == "13812341234", who
    # a platform reads what it submitted
    r = await s.intake.get(f"/v1/requests/{ids['req_p1']}", headers=s.auth("platform_1"))
    assert r.status_code == 200
    # lists: community staff see their community, a platform its own submissions
    lists = {}
    for who in ("staff_liyuan", "staff_chengdong", "platform_1", "staff_town"):
        r = await s.intake.get("/v1/requests?limit=100", headers=s.auth(who))
        assert r.status_code == 200
        lists[who] = {i["id"] for i in r.json()["items"]}
    assert ids["req"] in lists["staff_liyuan"] and ids["req_cd"] not in lists["staff_liyuan"]
    assert lists["staff_chengdong"] == {ids["req_cd"]}
    assert lists["platform_1"] == {ids["req_p1"]}
    assert {ids["req"], ids["req_cd"], ids["req_p1"]} <= lists["staff_town"]
    r = await s.intake.get("/open311/v2/requests.json", headers=s.auth("staff_chengdong"))
    assert {x["service_request_id"] for x in r.json()} == {ids["req_cd"]}
    # Open311 without credentials (or with a token that reads no requests): the public view
    for who in ("anon", "vol_a"):
        one = await s.intake.get(f"/open311/v2/requests/{ids['req']}.json", headers=s.auth(who))
        listed = await s.intake.get(
            "/open311/v2/requests.json",
            params={"service_request_id": f"{ids['req']},{ids['req_cd']}"},
            headers=s.auth(who),
        )
        assert one.status_code == listed.status_code == 200, (who, one.text, listed.text)
        assert {x["service_request_id"] for x in listed.json()} == {ids["req"], ids["req_cd"]}
        for text in (one.text, listed.text):
            assert "description" not in text and "13812341234" not in text, who
            assert BODY["description"] not in text and "compound:" not in text, who


async def test_routing_reads_are_scoped(services: Services, world: World) -> None:
    s, ids = services, world.ids
    r = await s.routing.get("/v1/cases?limit=200", headers=s.auth("dept_civil"))
    assert [c["id"] for c in r.json()] == [ids["case"]]
    r = await s.routing.get("/v1/cases?limit=200", headers=s.auth("dept_justice"))
    assert r.json() == []
    r = await s.routing.get("/v1/cases?limit=200", headers=s.auth("staff_liyuan"))
    assert {c["community"] for c in r.json()} == {"community:liyuan"}
    r = await s.routing.get(
        "/v1/cases?community=community:chengdong", headers=s.auth("staff_liyuan")
    )
    assert r.json() == []
    r = await s.routing.get("/v1/stats/units", headers=s.auth("dept_civil"))
    assert set(r.json()["units"]) == {"dept:civil-affairs"}
    for who in ("dept_civil", "staff_liyuan", "staff_town", "admin"):
        r = await s.routing.get(f"/v1/cases/{ids['case']}", headers=s.auth(who))
        assert r.status_code == 200, who


async def test_volunteer_reads_are_scoped(services: Services, world: World) -> None:
    s, ids = services, world.ids
    r = await s.volunteer.get("/v1/tasks", headers=s.auth("vol_b"))
    assert ids["task"] not in {t["id"] for t in r.json()}
    r = await s.volunteer.get("/v1/tasks", headers=s.auth("vol_a"))
    assert ids["task"] in {t["id"] for t in r.json()}
    r = await s.volunteer.get(f"/v1/tasks/{ids['task']}", headers=s.auth("vol_a"))
    assert r.status_code == 200 and "ranking" not in r.json()
    r = await s.volunteer.get("/v1/care-recipients", headers=s.auth("staff_chengdong"))
    assert [c["id"] for c in r.json()] == [ids["care_cd"]]
    r = await s.volunteer.get(
        "/v1/care-recipients?community=community:liyuan", headers=s.auth("staff_chengdong")
    )
    assert r.json() == []
    r = await s.volunteer.get(f"/v1/care-recipients/{ids['care']}", headers=s.auth("staff_liyuan"))
    assert r.status_code == 200
    r = await s.volunteer.get("/v1/volunteers/v:a", headers=s.auth("vol_a"))
    assert r.status_code == 200


async def test_notify_reads_are_scoped(services: Services, world: World) -> None:
    """What notify planned from the world's events, as each caller may list it."""
    s, ids = services, world.ids
    vreq = f"YS-{ids['vcase']}"  # the request of the case a volunteer was offered
    deliveries = s.db("notify").deliveries

    async def heard() -> bool:
        unit = await deliveries.find_one(
            {"request_id": ids["req"], "recipient": "community:liyuan"}
        )
        vol = await deliveries.find_one({"request_id": vreq, "recipient": "volunteer:v:a"})
        return unit is not None and vol is not None

    await eventually(heard, timeout=30, what="notify planned the world's deliveries")

    async def seen(who: str, **params: str) -> set[tuple[str, str]]:
        r = await s.notify.get(
            "/v1/notifications", params={"limit": "500", **params}, headers=s.auth(who)
        )
        assert r.status_code == 200, (who, r.text)
        return {(x["request_id"], x["recipient"]) for x in r.json()}

    for who in ("staff_town", "admin"):
        assert {(ids["req"], "community:liyuan"), (vreq, "volunteer:v:a")} <= await seen(who)
    assert {r for _, r in await seen("vol_a")} == {"volunteer:v:a"}
    assert await seen("vol_a", request_id=ids["req"]) == set()
    assert await seen("vol_b") == set()
    civil = {r for _, r in await seen("dept_civil")}
    assert civil <= {"dept:civil-affairs", "liaison:dept:civil-affairs"}
    assert await seen("dept_civil", request_id=vreq) == set()
    assert await seen("dept_justice") == set()


async def test_allowed_actions_succeed_after_the_denies(services: Services, world: World) -> None:
    """The owners can still do what the probes could not (run after the deny rows)."""
    s, ids = services, world.ids
    r = await s.routing.post(f"/v1/cases/{ids['case']}/acknowledge", headers=s.auth("dept_civil"))
    assert r.status_code == 200, r.text
    r = await s.volunteer.post(f"/v1/tasks/{ids['task']}/accept", headers=s.auth("vol_a"))
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    r = await s.volunteer.post(
        f"/v1/tasks/{ids['task']}/complete", json={"hours": 1.5}, headers=s.auth("vol_a")
    )
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    r = await s.intake.post(
        f"/v1/requests/{ids['req_w']}/withdraw", json={"tracking_code": ids["code_w"]}
    )
    assert r.status_code == 200 and r.json()["status"] == "withdrawn", r.text
    # notify: a department sets its liaison's channels and reads them back; a volunteer
    # lists their own notifications
    justice = s.auth("dept_justice")
    r = await s.notify.put("/v1/preferences/liaison:dept:justice", json=SMS, headers=justice)
    assert r.status_code == 200, r.text
    r = await s.notify.get("/v1/preferences/liaison:dept:justice", headers=justice)
    assert r.status_code == 200 and r.json()["channels"] == ["sms"], r.text
    assert r.json()["source"] == "preference"
    r = await s.notify.get("/v1/notifications", headers=s.auth("vol_a"))
    assert r.status_code == 200 and r.json(), r.text


@pytest.mark.parametrize("service", ["intake", "routing", "volunteer", "notify"])
async def test_every_route_is_denied_to_anonymous_callers_unless_declared_public(
    services: Services, service: str
) -> None:
    client = services.client(service)
    schema = (await client.get("/openapi.json")).json()
    answered: set[tuple[str, str]] = set()
    routes = [
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method in ops
        if path not in OPERATIONS
    ]
    assert len(routes) >= len(PUBLIC[service]) + GUARDED_AT_LEAST[service]
    for method, route in routes:
        r = await client.request(method, re.sub(r"\{[^}]+\}", "nope", route), json={})
        if r.status_code != 401:
            answered.add((method, route))
        else:
            assert r.json()["error"]["code"] == "unauthorized"
    assert answered == PUBLIC[service]
