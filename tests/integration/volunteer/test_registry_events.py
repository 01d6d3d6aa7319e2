"""The registry's lifecycle on real Kafka and SecantusDB: a registration and a deactivation
are published on ``tongxin.volunteer.registry.v1`` (other edits are not), and a
deactivated volunteer's pending offer goes to the next candidate at once."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.volunteer.conftest import Harness, routed
from tests.support import eventually, headers_of, read_topic
from tongxin.contracts.topics import VOLUNTEER_REGISTRY


async def registry_events(h: Harness, key: str, n: int) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of the registry events of volunteer ``key``, once there are ``n``."""
    records = await read_topic(h.stack.bootstrap, h.settings.topic(VOLUNTEER_REGISTRY.name))
    mine = sorted((r for r in records if r.key == key.encode()), key=lambda r: r.offset)
    return [
        (
            headers_of(r)["ce_type"].removeprefix("tongxin.").rsplit(".v", 1)[0],
            json.loads(r.value),
        )
        for r in mine
    ]


async def test_a_registration_and_a_deactivation_are_published_once(harness: Harness) -> None:
    h = harness
    assert h.http is not None
    body = {
        "id": "vol:r1",
        "name": "孙丽",
        "phone": "13800007777",
        "skills": ["legal"],
        "community": "community:liyuan",
    }
    r = await h.http.post("/v1/volunteers", json=body, headers=h.staff())
    assert r.status_code == 201, r.text
    # a volunteer may change their own availability: nothing to publish
    r = await h.http.patch(
        "/v1/volunteers/vol:r1",
        json={"availability": [{"day": 6, "start": "14:00", "end": "18:00"}]},
        headers=h.vol("vol:r1"),
    )
    assert r.status_code == 200, r.text
    for change in ({"name": "孙丽华"}, {"active": False}, {"active": False}):
        r = await h.http.patch("/v1/volunteers/vol:r1", json=change, headers=h.staff())
        assert r.status_code == 200, r.text
    r = await h.http.delete("/v1/volunteers/vol:r1", headers=h.staff())  # deactivated already
    assert r.status_code == 200, r.text
    # the last write is a reactivation: published by nobody (an admin reactivates the account)
    r = await h.http.patch("/v1/volunteers/vol:r1", json={"active": True}, headers=h.staff())
    assert r.status_code == 200, r.text
    r = await h.http.post(  # staff only, as every registry write
        "/v1/volunteers", json={**body, "id": "vol:r2"}, headers=h.vol("vol:r1")
    )
    assert r.status_code == 403, r.text

    async def both() -> list[tuple[str, dict[str, Any]]] | None:
        found = await registry_events(h, "vol:r1", 2)
        return found if len(found) >= 2 else None

    events = await eventually(both, timeout=30, what="the registry's events")
    assert [t for t, _ in events] == ["volunteer.registered", "volunteer.deactivated"]
    registered, deactivated = events[0][1], events[1][1]
    assert registered["volunteer_id"] == registered["request_id"] == "vol:r1"
    assert (registered["name"], registered["community"], registered["skills"]) == (
        "孙丽",
        "community:liyuan",
        ["legal"],
    )
    assert registered["active"] is True and "phone" not in registered
    assert deactivated["volunteer_id"] == "vol:r1"
    # nothing more arrives for it: the reactivation and the repeated deactivations
    # published nothing (the read above drained the topic to its end)
    assert len(await registry_events(h, "vol:r1", 0)) == 2
    assert not await registry_events(h, "vol:r2", 0)


async def test_a_deactivated_volunteers_pending_offer_goes_to_the_next_candidate(
    harness: Harness,
) -> None:
    h = harness
    assert h.http is not None
    await h.publish(routed("C-deact1"))

    async def offered_to(vid: str) -> dict[str, Any] | None:
        t = await h.db.tasks.find_one({"_id": "T-deact1"}) or {}
        return t if t.get("status") == "offered" and t.get("volunteer_id") == vid else None

    await eventually(lambda: offered_to("v:a"), timeout=30, what="the offer to v:a")
    r = await h.http.delete("/v1/volunteers/v:a", headers=h.staff())
    assert r.status_code == 200 and r.json()["active"] is False, r.text

    # offers last 30 minutes here: only the deactivation can have moved it on
    task = await eventually(lambda: offered_to("v:b"), timeout=30, what="the offer to v:b")
    assert task["attempt"] == 2 and task["tried"] == ["v:a", "v:b"]
    assert task["offer_outcomes"]["1"]["outcome"] == "expired"
    late = await h.http.post("/v1/tasks/T-deact1/accept", headers=h.vol("v:a"))
    assert late.status_code == 409 and late.json()["error"]["code"] == "offer_closed"
    events = [(t, d.get("volunteer_id")) for t, d in await h.task_events(3)]
    mine = [e for e in events if e[0].startswith("task.")]
    assert mine == [
        ("task.offered", "v:a"),
        ("task.expired", "v:a"),
        ("task.offered", "v:b"),
    ]
    # v:a's offer deadline was moved to the deactivation and fired once; v:b's waits
    deadlines = h.db.deadlines
    assert await deadlines.count_documents({"subject": "T-deact1", "status": "fired"}) == 1
    assert await deadlines.count_documents({"subject": "T-deact1", "status": "pending"}) == 1
