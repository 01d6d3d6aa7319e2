"""Idempotency-Key against the real database: replays under concurrency store one request."""

from __future__ import annotations

import asyncio

from tests.integration.intake.conftest import BODY, Intake
from tests.support import unique


async def test_concurrent_replays_of_one_key_store_one_request_and_one_event(
    intake: Intake,
) -> None:
    key = unique("idem-")
    body = {**BODY, "title": unique("并发"), "description": unique("并发提交说明")}
    before = await submitted_records(intake)
    answers = await asyncio.gather(
        *(intake.submit(body, headers={"Idempotency-Key": key}) for _ in range(8))
    )
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    bodies = {r.text for r in answers}
    assert len(bodies) == 1, bodies
    rid = answers[0].json()["id"]
    assert await intake.db.requests.count_documents({"title": body["title"]}) == 1
    after = await submitted_records(intake)
    assert after - before == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 7

    later = await intake.submit(body, headers={"Idempotency-Key": key})
    assert later.status_code == 201 and later.json()["id"] == rid
    other = await intake.submit({**body, "title": "别的事情"}, headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_to_the_caller(intake: Intake) -> None:
    key = unique("idem-")
    body = {**BODY, "title": unique("作用域"), "description": unique("作用域说明")}
    anon = await intake.submit(body, headers={"Idempotency-Key": key})
    staff = await intake.submit(body, headers={"Idempotency-Key": key, **intake.staff()})
    assert anon.status_code == staff.status_code == 201
    assert anon.json()["id"] != staff.json()["id"]


async def submitted_records(intake: Intake) -> int:
    """``request.submitted`` records in intake's outbox (a batch's records share a document)."""
    n = 0
    async for d in intake.db.outbox.find({}, {"records.type": 1}):
        n += sum(r["type"] == "tongxin.request.submitted.v1" for r in d["records"])
    return n
