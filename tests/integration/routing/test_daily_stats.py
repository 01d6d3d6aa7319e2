"""GET /v1/stats/daily: cases opened per local day and tier, scoped like the case list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.routing.conftest import Routing
from tongxin.runtime.auth import Role

PROPERTY = "station:liyuan:property"


async def test_daily_counts_by_tier_for_each_caller(routing: Routing) -> None:
    http = routing.http
    await routing.submit("sanitation")  # routine, the property service centre
    await routing.submit("sanitation")
    await routing.submit(
        "safety_hazard",
        urgency="emergency",
        community="community:chengdong",
        compound="compound:dongsheng",
    )  # major, whistled to dept:housing
    since = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    staff = await http.get(
        "/v1/stats/daily", params={"since": since}, headers=routing.auth(Role.STAFF)
    )
    assert staff.status_code == 200, staff.text
    body = staff.json()
    assert body["utc_offset_minutes"] == 480
    assert len(body["days"]) in (3, 4)  # every local day of the window, zeros included
    today = body["days"][-1]
    assert (today["routine"], today["major"], today["total"]) == (2, 1, 3)
    assert sum(d["total"] for d in body["days"]) == 3
    # a department counts only the cases assigned to it
    dept = await http.get(
        "/v1/stats/daily", params={"since": since}, headers=routing.dept("dept:housing")
    )
    assert [(d["major"], d["total"]) for d in dept.json()["days"]][-1] == (1, 1)
    # community staff: their community only, and nothing for another community
    liyuan = routing.auth(Role.STAFF, "community:liyuan")
    own = await http.get("/v1/stats/daily", params={"since": since}, headers=liyuan)
    assert own.json()["days"][-1]["total"] == 2
    other = await http.get(
        "/v1/stats/daily",
        params={"since": since, "community": "community:chengdong"},
        headers=liyuan,
    )
    assert sum(d["total"] for d in other.json()["days"]) == 0
    # a town official may narrow to one unit
    narrowed = await http.get(
        "/v1/stats/daily",
        params={"since": since, "unit": PROPERTY},
        headers=routing.auth(Role.STAFF),
    )
    assert narrowed.json()["days"][-1] == {**today, "major": 0, "total": 2}


async def test_daily_refuses_bad_windows_and_callers(routing: Routing) -> None:
    http = routing.http
    now = datetime.now(UTC)
    staff = routing.auth(Role.STAFF)
    backwards = {"since": now.isoformat(), "until": (now - timedelta(days=1)).isoformat()}
    r = await http.get("/v1/stats/daily", params=backwards, headers=staff)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    too_long = {"since": (now - timedelta(days=400)).isoformat()}
    r = await http.get("/v1/stats/daily", params=too_long, headers=staff)
    assert r.status_code == 422
    at_the_end = {"since": "9999-12-30T00:00:00Z", "until": "9999-12-31T23:59:59Z"}
    r = await http.get("/v1/stats/daily", params=at_the_end, headers=staff)
    assert r.status_code == 422 and r.json()["error"]["details"] == [{"loc": ["query", "since"]}]
    assert (await http.get("/v1/stats/daily")).status_code == 401
    r = await http.get("/v1/stats/daily", headers=routing.auth(Role.VOLUNTEER, sub="vol:1"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
