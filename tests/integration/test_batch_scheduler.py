"""Durable deadlines fired in batches through the unit of work, on real SecantusDB:
exactly once across replicas, a stalled replica's batch decided again without the
deadlines it lost, failures given back for a retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc, ensure_indexes, make_client
from tongxin.runtime.outbox import MongoOutbox
from tongxin.runtime.scheduler import (
    DEADLINE_INDEXES,
    FIRED,
    BatchScheduler,
    add,
    cancel,
)
from tongxin.runtime.uow import Decision, Effects, Refused, UnitOfWork

Rig = tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc], UnitOfWork]


@pytest.fixture
async def rig(stack: LocalStack) -> AsyncIterator[Rig]:
    client = make_client(stack.mongodb_uri)
    db = client[unique("bsched_")]
    await ensure_indexes(db, DEADLINE_INDEXES)
    await db.create_collection("effects")
    yield client, db, UnitOfWork(client, db.name, MongoOutbox(db))
    await client.close()


def escalate(
    batches: list[int], hold: asyncio.Event | None = None, held: asyncio.Event | None = None
):  # type: ignore[no-untyped-def]
    async def handle(docs: Sequence[Doc]) -> Decision[None]:
        batches.append(len(docs))
        if held is not None and hold is not None and not hold.is_set():
            held.set()  # in its handler while holding the lease
            await hold.wait()
        d: Decision[None] = Decision()
        for i, doc in enumerate(docs):
            if doc["subject"] == "case-refused":
                d.refuse(i, Refused("the case is gone"))
                continue
            d.effects.update("effects", {"_id": doc["subject"]}, {"$inc": {"n": 1}}, upsert=True)
            d.done(i, None)
        return d

    return handle


async def seed(uow: UnitOfWork, ids: Sequence[str], due: datetime) -> None:
    fx = Effects()
    for i in ids:
        add(fx, i, "ack", due, f"case-{i}")
    await uow.commit(fx)


async def test_two_replicas_fire_each_due_deadline_exactly_once_in_batches(rig: Rig) -> None:
    _client, db, uow = rig
    past = datetime.now(UTC) - timedelta(seconds=1)
    await seed(uow, [f"d{i}" for i in range(150)], past)
    await seed(uow, ["later"], past + timedelta(hours=1))
    await seed(uow, ["gone"], past)
    fx = Effects()
    cancel(fx, "gone", datetime.now(UTC))
    await uow.commit(fx)

    batches: list[int] = []
    a = BatchScheduler(db, uow, escalate(batches), owner="a", batch=100)
    b = BatchScheduler(db, uow, escalate(batches), owner="b", batch=100)
    fired = 0
    while True:
        n = sum(await asyncio.gather(a.fire_due(), b.fire_due()))
        if n == 0:
            break
        fired += n
    assert fired == 150
    assert max(batches) > 1, "fired in batches"
    effects = {d["_id"]: d["n"] async for d in db.effects.find()}
    assert effects == {f"case-d{i}": 1 for i in range(150)}
    assert await db.deadlines.count_documents({"status": FIRED}) == 150
    assert (await db.deadlines.find_one({"_id": "later"}))["status"] == "pending"
    assert (await db.deadlines.find_one({"_id": "gone"}))["status"] == "cancelled"


async def test_a_stalled_replica_loses_its_lease_and_its_effect(rig: Rig) -> None:
    _client, db, uow = rig
    await seed(uow, ["d1"], datetime.now(UTC) - timedelta(seconds=1))
    hold, held = asyncio.Event(), asyncio.Event()
    slow = BatchScheduler(db, uow, escalate([], hold, held), owner="slow")
    slow_task = asyncio.create_task(slow.fire_due())
    await asyncio.wait_for(held.wait(), 30)
    lease = await db.deadlines.find_one({"_id": "d1"})
    assert lease is not None and lease["lease_owner"] == "slow"
    # the other replica's clock is past the slow one's lease: it ran out while it stalled
    expired = lease["lease_until"] + timedelta(milliseconds=1)
    fast = BatchScheduler(db, uow, escalate([]), owner="fast", clock=lambda: expired)
    assert await fast.fire_due() == 1
    hold.set()
    assert await slow_task == 0
    assert (await db.effects.find_one({"_id": "case-d1"}))["n"] == 1
    assert (await db.deadlines.find_one({"_id": "d1"}))["fired_by"] == "fast"


async def test_a_refused_deadline_is_given_back_and_the_rest_fire(rig: Rig) -> None:
    _client, db, uow = rig
    past = datetime.now(UTC) - timedelta(seconds=1)
    await seed(uow, ["ok"], past)
    fx = Effects()
    add(fx, "no", "ack", past, "case-refused")
    await uow.commit(fx)
    s = BatchScheduler(db, uow, escalate([]), owner="s", lease=timedelta(seconds=30))
    assert await s.fire_due() == 1
    given_back = await db.deadlines.find_one({"_id": "no"})
    assert given_back is not None
    assert given_back["status"] == "pending" and given_back["lease_owner"] is None
    # not before the lease: the next tick does not hammer it
    assert await s.fire_due() == 0
    later = BatchScheduler(
        db,
        uow,
        escalate([]),
        owner="t",
        clock=lambda: datetime.now(UTC) + timedelta(seconds=31),
    )
    assert await later.claim(datetime.now(UTC) + timedelta(seconds=31)) != []
