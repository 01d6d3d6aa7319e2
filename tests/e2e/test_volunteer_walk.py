"""Volunteer end to end, with the four services as processes: a request's task walks the
list by expiry to task.unmatched and staff hear of it; the seeded brigade and special-care
visits are there before anyone asks."""

from __future__ import annotations

from typing import Any

import httpx

from tests.platform import Platform
from tests.support import eventually
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.settings import PLACEHOLDER_SECRET

ELDERLY = {
    "channel": "grid_worker",
    "category": "elderly_care",
    "title": "独居老人助餐",
    "description": "6栋独居老人行动不便，需要志愿者帮忙送餐。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "李建华", "phone": "13987654321"},
}


def auth(role: Role, sub: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(PLACEHOLDER_SECRET, sub=sub, role=role)}"}


STAFF = auth(Role.STAFF, "staff:e2e")


async def test_offers_expire_down_the_list_to_unmatched_and_staff_are_alerted(
    platform: Platform,
) -> None:
    async with httpx.AsyncClient(base_url=platform.url("intake"), timeout=10) as http:
        r = await http.post("/v1/requests", json=ELDERLY)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]

    async with httpx.AsyncClient(base_url=platform.url("volunteer"), timeout=10) as vol:

        async def unmatched() -> dict[str, Any] | None:
            tasks = (await vol.get("/v1/tasks", params={"request_id": rid}, headers=STAFF)).json()
            return tasks[0] if tasks and tasks[0]["status"] == "unmatched" else None

        # the accept window is 1.8 s at TONGXIN_DEADLINE_SCALE=0.001: nobody answers
        task = await eventually(unmatched, timeout=40, what="the walk reached unmatched")
        # the two seeded elder-care volunteers, the same community's first
        assert task["tried"] == ["vol:001", "vol:006"]
        assert [o["outcome"] for o in task["offers"]] == ["expired", "expired"]
        assert task["offers"][0]["scores"]["proximity"] == 0.7

        late = await vol.post(
            f"/v1/tasks/{task['id']}/accept", headers=auth(Role.VOLUNTEER, "vol:001")
        )
        assert late.status_code == 409

        # the seeded brigade and the special-care visits, generated before anyone asked
        squads = (await vol.get("/v1/squads", headers=STAFF)).json()
        assert len(squads) == 8
        visits = (await vol.get("/v1/care-visits", headers=STAFF)).json()
        assert {v["recipient_id"] for v in visits} >= {"care:001", "care:002", "care:003"}
        metrics = (await vol.get("/metrics")).text
        assert 'tongxin_volunteer_tasks_total{outcome="expired"}' in metrics

    hooks = await eventually(
        lambda: _matching(platform, rid, "task.unmatched"),
        timeout=20,
        what="staff webhook told of task.unmatched",
    )
    assert hooks


async def _matching(platform: Platform, rid: str, event_type: str) -> list[dict[str, Any]]:
    return platform.sink.matching(request_id=rid, event_type=event_type)
