"""Durable deadlines on real SecantusDB: exactly once across replicas and lease take-overs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tests.support import unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc, ensure_indexes, in_transaction, make_client
from tongxin.runtime.scheduler import (
    DEADLINE_INDEXES,
    FIRED,
    Complete,
    DeadlineScheduler,
    DeadlineStore,
)


@pytest.fixture
async def db(stack: LocalStack) -> AsyncIterator[tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]]]:
    client = make_client(stack.mongodb_uri)
    database = client[unique("sched_")]
    await ensure_indexes(database, DEADLINE_INDEXES)
    yield client, database
    await client.close()


def escalate(  # type: ignore[no-untyped-def]
    client: AsyncMongoClient[Doc],
    database: AsyncDatabase[Doc],
    stall: Callable[[], Awaitable[None]] | None = None,
):
    async def handler(doc: Doc, complete: Complete) -> None:
        if stall is not None:
            await stall()  # a replica that stalls past its lease (until the test lets it go)

        async def txn(session: AsyncClientSession) -> None:
            await database.effects.update_one(
                {"_id": doc["subject"]}, {"$inc": {"n": 1}}, upsert=True, session=session
            )
            await complete(session)

        await in_transaction(client, txn)

    return handler


async def test_two_replicas_fire_each_due_deadline_exactly_once(
    db: tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]],
) -> None:
    client, database = db
    store = DeadlineStore(database)
    past = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(20):
        await store.schedule(None, f"d{i}", "ack", past, f"case-{i}")
    await store.schedule(None, "later", "ack", past + timedelta(hours=1), "case-later")
    await store.schedule(None, "gone", "ack", past, "case-gone")
    assert await store.cancel(None, "gone")

    a = DeadlineScheduler(store, {"ack": escalate(client, database)}, owner="a")
    b = DeadlineScheduler(store, {"ack": escalate(client, database)}, owner="b")
    fired_a, fired_b = await asyncio.gather(a.fire_due(), b.fire_due())
    assert fired_a + fired_b == 20
    effects = {d["_id"]: d["n"] async for d in database.effects.find()}
    assert effects == {f"case-{i}": 1 for i in range(20)}
    assert await database.deadlines.count_documents({"status": FIRED}) == 20
    assert (await database.deadlines.find_one({"_id": "later"}))["status"] == "pending"
    assert (await database.deadlines.find_one({"_id": "gone"}))["status"] == "cancelled"


async def test_a_stalled_replica_loses_its_lease_and_its_effect(
    db: tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]],
) -> None:
    client, database = db
    store = DeadlineStore(database)
    await store.schedule(None, "d1", "ack", datetime.now(UTC) - timedelta(seconds=1), "case-1")
    claimed, resume = asyncio.Event(), asyncio.Event()

    async def stall() -> None:
        claimed.set()  # the slow replica holds the lease and is in its handler
        await resume.wait()

    slow = DeadlineScheduler(
        store,
        {"ack": escalate(client, database, stall=stall)},
        owner="slow",
        lease=timedelta(seconds=30),
    )
    slow_task = asyncio.create_task(slow.fire_due())
    await asyncio.wait_for(claimed.wait(), 30)
    held = await database.deadlines.find_one({"_id": "d1"})
    assert held is not None and held["lease_owner"] == "slow"
    # the other replica's clock is past the slow one's lease: it ran out while it stalled
    expired = held["lease_until"].replace(tzinfo=UTC) + timedelta(milliseconds=1)
    fast = DeadlineScheduler(
        store, {"ack": escalate(client, database)}, owner="fast", clock=lambda: expired
    )
    assert await fast.fire_due() == 1
    resume.set()
    assert await slow_task == 0
    doc = await database.effects.find_one({"_id": "case-1"})
    assert doc is not None and doc["n"] == 1
    fired = await database.deadlines.find_one({"_id": "d1"})
    assert fired is not None and fired["fired_by"] == "fast"


async def test_a_failing_handler_releases_the_deadline_for_a_retry(
    db: tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]],
) -> None:
    client, database = db
    store = DeadlineStore(database)
    await store.schedule(None, "d1", "ack", datetime.now(UTC) - timedelta(seconds=1), "case-1")
    calls = 0

    async def flaky(doc: Doc, complete: Complete) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("downstream not ready")

    s = DeadlineScheduler(store, {"ack": flaky}, owner="s", lease=timedelta(seconds=0.2))
    assert await s.fire_due() == 0
    assert (await database.deadlines.find_one({"_id": "d1"}))["status"] == "pending"
    later = DeadlineScheduler(
        store,
        {"ack": escalate(client, database)},
        owner="t",
        clock=lambda: datetime.now(UTC) + timedelta(seconds=1),
    )
    assert await later.fire_due() == 1
    assert calls == 1


async def test_deadlines_added_in_grouped_transactions_fire_like_scheduled_ones(
    db: tuple[AsyncMongoClient[Doc], AsyncDatabase[Doc]],
) -> None:
    """``add`` (a new subject's deadlines, inserted with the transaction's other inserts):
    concurrent callers share grouped commits, each deadline is stored once and fires once;
    an id that exists already fails its own transaction, and nothing of it is written."""
    client, database = db
    store = DeadlineStore(database)
    past = datetime.now(UTC) - timedelta(seconds=1)

    async def open_subject(i: int) -> None:
        async def txn(session: AsyncClientSession) -> None:
            await database.subjects.insert_one({"_id": f"case-{i}"}, session=session)
            await store.add(session, f"d{i}", "ack", past, f"case-{i}", {"unit": "u"})

        await in_transaction(client, txn)

    await asyncio.gather(*(open_subject(i) for i in range(30)))
    assert await database.deadlines.count_documents({"status": "pending"}) == 30

    async def again(session: AsyncClientSession) -> None:
        await database.subjects.insert_one({"_id": "case-again"}, session=session)
        await store.add(session, "d0", "ack", past, "case-again")

    with pytest.raises(DuplicateKeyError):
        await in_transaction(client, again)
    assert await database.subjects.count_documents({"_id": "case-again"}) == 0

    fired = await DeadlineScheduler(store, {"ack": escalate(client, database)}).fire_due()
    assert fired == 30
    effects = {d["_id"]: d["n"] async for d in database.effects.find()}
    assert effects == {f"case-{i}": 1 for i in range(30)}
    assert (await database.deadlines.find_one({"_id": "d7"}))["payload"] == {"unit": "u"}
