"""GET /v1/requests: staff only, filters, cursor paging without gaps or repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.intake.conftest import BODY, Intake
from tests.support import unique
from tongxin.runtime.auth import Role


async def test_filters_and_cursor_paging(intake: Intake) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = []
    for i in range(7):
        body = {
            **BODY,
            "community": "community:chengdong",
            "compound": "compound:lanting",
            "category": "sanitation",
            "attributes": {"issue": "garbage"},
            "channel": "grid_worker" if i % 2 else "app",
            "title": unique(f"第{i}件"),
            "description": unique("楼道卫生说明") + "x" * i * 7,
        }
        r = await intake.submit(body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    params = {
        "community": "community:chengdong",
        "category": "sanitation",
        "submitted_from": start.isoformat(),
        "limit": 3,
    }
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        q = {**params, **({"cursor": cursor} if cursor else {})}
        r = await intake.http.get("/v1/requests", params=q, headers=intake.staff())
        assert r.status_code == 200, r.text
        page = r.json()
        assert all("submitter" not in item for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen))
    assert pages >= 3
    stamps = [s for s in seen if s in ids]
    assert stamps == sorted(ids, reverse=True)  # newest first

    grid = await intake.http.get(
        "/v1/requests",
        params={**params, "channel": "grid_worker", "limit": 100},
        headers=intake.staff(),
    )
    got = {i["id"] for i in grid.json()["items"]}
    assert got & set(ids) == {ids[1], ids[3], ids[5]}
    assert all(i["channel"] == "grid_worker" for i in grid.json()["items"])

    future = await intake.http.get(
        "/v1/requests",
        params={"submitted_from": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
        headers=intake.staff(),
    )
    assert future.json() == {"items": [], "next_cursor": None}


async def test_listing_refuses_residents_bad_cursors_and_bad_ranges(intake: Intake) -> None:
    assert (await intake.http.get("/v1/requests")).status_code == 401
    vol = intake.staff(Role.VOLUNTEER)
    assert (await intake.http.get("/v1/requests", headers=vol)).status_code == 403
    bad = await intake.http.get("/v1/requests", params={"cursor": "!!"}, headers=intake.staff())
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_cursor"
    now = datetime.now(UTC)
    rng = await intake.http.get(
        "/v1/requests",
        params={
            "submitted_from": now.isoformat(),
            "submitted_to": (now - timedelta(1)).isoformat(),
        },
        headers=intake.staff(),
    )
    assert rng.status_code == 422
    status = await intake.http.get(
        "/v1/requests", params={"status": "lost"}, headers=intake.staff()
    )
    assert status.status_code == 422
