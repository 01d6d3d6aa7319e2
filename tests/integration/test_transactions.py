"""``in_transaction`` on a real SecantusDB: grouped commits keep each caller's outcome, write
conflicts are retried, and a database that goes away is reported at once, not retried."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from tests.support import eventually, unique
from tongxin.devstack.procs import free_port
from tongxin.devstack.servers import SecantusServer
from tongxin.devstack.stack import LocalStack
from tongxin.runtime import mongo
from tongxin.runtime.mongo import (
    AlreadyHandled,
    Doc,
    defer_insert,
    defer_update,
    handle_once,
    in_transaction,
    make_client,
)


class Refused(Exception):
    """A domain error raised inside one caller's transaction."""


@pytest.fixture
async def client(stack: LocalStack) -> AsyncIterator[AsyncMongoClient[Doc]]:
    c = make_client(stack.mongodb_uri)
    yield c
    await c.close()


class Commits(monitoring.CommandListener):
    """Counts the commits a client sends."""

    def __init__(self) -> None:
        self.n = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.n += event.command_name == "commitTransaction"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_concurrent_callers_are_grouped_and_each_gets_its_own_outcome(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mongo, "MAX_INFLIGHT", 1)  # the rest queue and commit in groups
    commits = Commits()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongodb_uri, event_listeners=[commits])
    col = client[unique("txn_")]["docs"]
    await col.insert_one({"_id": "counter", "n": 0})

    def caller(i: int, refuse: bool) -> Callable[[AsyncClientSession], Awaitable[int]]:
        async def fn(s: AsyncClientSession) -> int:
            await col.update_one({"_id": "counter"}, {"$inc": {"n": 1}}, session=s)
            if refuse:
                raise Refused(i)
            await col.insert_one({"_id": f"doc-{i}"}, session=s)
            return i

        return fn

    try:
        # 30 callers, none refused: they share a few commits
        first = await asyncio.gather(*(in_transaction(client, caller(i, False)) for i in range(30)))
        assert first == list(range(30))
        assert commits.n < 10, commits.n
        # 30 more, every tenth refused: the group fails, each runs alone for its own outcome
        results = await asyncio.gather(
            *(in_transaction(client, caller(i, i % 10 == 3)) for i in range(30, 60)),
            return_exceptions=True,
        )
        done = await col.count_documents({"_id": {"$regex": "^doc-"}})
        counter = (await col.find_one({"_id": "counter"}) or {})["n"]
    finally:
        await client.close()
    assert [r.args[0] for r in results if isinstance(r, Refused)] == [33, 43, 53]
    assert [r for r in results if not isinstance(r, Refused)] == [
        i for i in range(30, 60) if i % 10 != 3
    ]
    # a refused caller changed nothing: neither its insert nor its increment stayed
    assert (done, counter) == (57, 57)


async def test_an_event_is_applied_once_however_many_deliver_it(
    client: AsyncMongoClient[Doc],
) -> None:
    db = client[unique("txn_")]
    await db[mongo.PROCESSED].create_index([("consumer", 1), ("event_id", 1)], unique=True)

    async def apply(s: AsyncClientSession) -> None:
        await db.effects.insert_one({"event": "e-1"}, session=s)

    outcomes = await asyncio.gather(
        *(handle_once(client, db, "test", "e-1", apply) for _ in range(12))
    )
    assert outcomes.count(True) == 1
    assert await db.effects.count_documents({}) == 1
    with pytest.raises(AlreadyHandled):
        await in_transaction(client, lambda s: mongo.record_event_once(db, s, "test", "e-1"))


async def test_a_redelivered_event_whose_handler_trips_over_its_own_effects_is_a_duplicate(
    client: AsyncMongoClient[Doc],
) -> None:
    """The event record is written at the end of the transaction, after the handler: a
    handler that fails on a redelivery (its first delivery already changed what it checks)
    still gets ``AlreadyHandled`` — nothing parked, nothing changed — while the same failure
    on an event never handled reaches the caller."""
    db = client[unique("txn_")]
    await db[mongo.PROCESSED].create_index([("consumer", 1), ("event_id", 1)], unique=True)
    await db.cases.insert_one({"_id": "c-1", "status": "open"})

    async def close(s: AsyncClientSession) -> None:
        res = await db.cases.update_one(
            {"_id": "c-1", "status": "open"}, {"$set": {"status": "closed"}}, session=s
        )
        if res.modified_count != 1:
            raise Refused("the case is not open")

    assert await handle_once(client, db, "test", "close-1", close)
    assert not await handle_once(client, db, "test", "close-1", close)  # redelivered
    with pytest.raises(Refused):
        await handle_once(client, db, "test", "close-2", close)  # a new event: a real refusal
    assert await db[mongo.PROCESSED].count_documents({"consumer": "test"}) == 1


@pytest.fixture
def own_db() -> Iterator[SecantusServer]:
    data = Path(tempfile.mkdtemp(prefix="tongxin-txn-"))
    server = SecantusServer(data, free_port())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)  # runs had left hundreds of these in /tmp


@pytest.mark.parametrize("deferred", [False, True], ids=["insert", "bulkWrite"])
async def test_a_stopped_database_is_reported_at_once_and_recovers(
    own_db: SecantusServer, monkeypatch: pytest.MonkeyPatch, deferred: bool
) -> None:
    monkeypatch.setattr(mongo, "MAX_INFLIGHT", 1)
    c = make_client(own_db.uri, timeout_ms=2000)
    try:
        col = c.tx.docs

        async def write(s: AsyncClientSession) -> None:
            if not deferred:
                await col.insert_one({}, session=s)
                return
            # the transaction's only command is the bulkWrite of its deferred inserts
            assert defer_insert(s, col, {}) and defer_insert(s, c.tx.other, {})

        await in_transaction(c, write)
        await asyncio.to_thread(own_db.stop)
        # one caller alone and a queue of them: each sees the connection failure. PyMongo's
        # with_transaction retried it for 120 s; the bound here only tells a hang from an answer
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(in_transaction(c, write) for _ in range(20)), return_exceptions=True),
            timeout=60,
        )
        assert all(isinstance(o, ConnectionFailure) for o in outcomes), outcomes
        await asyncio.to_thread(own_db.start)
        await asyncio.wait_for(
            asyncio.gather(*(in_transaction(c, write) for _ in range(20))), timeout=60
        )
        assert await col.count_documents({}) == 21
    finally:
        await c.close()


async def test_a_caller_that_waits_too_long_for_a_slot_gets_busy_and_nothing_is_stored(
    client: AsyncMongoClient[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mongo, "MAX_INFLIGHT", 1)
    col = client[unique("txn_")]["docs"]
    release, holding = asyncio.Event(), asyncio.Event()

    async def slow(s: AsyncClientSession) -> None:
        await col.insert_one({"_id": "slow"}, session=s)
        holding.set()
        await release.wait()

    def write(name: str) -> Callable[[AsyncClientSession], Awaitable[None]]:
        async def fn(s: AsyncClientSession) -> None:
            await col.insert_one({"_id": name}, session=s)

        return fn

    holder = asyncio.create_task(in_transaction(client, slow))
    await asyncio.wait_for(holding.wait(), 30)  # the only slot is taken
    patient = asyncio.create_task(in_transaction(client, write("patient")))
    token = mongo.WAIT_DEADLINE.set(time.monotonic() + 0.3)
    try:
        with pytest.raises(mongo.Busy):
            await in_transaction(client, write("hasty"))
    finally:
        mongo.WAIT_DEADLINE.reset(token)
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, patient), timeout=60)
    assert sorted([d["_id"] async for d in col.find({})]) == ["patient", "slow"]


async def test_drain_aborts_a_group_still_running_so_it_blocks_nobody_afterwards(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mongo, "MAX_INFLIGHT", 1)
    monkeypatch.setattr(mongo, "CONFLICT_RETRY_S", 1.0)  # a conflict surfaces at once
    c = make_client(stack.mongodb_uri)
    other = make_client(stack.mongodb_uri)
    col = c[unique("txn_")]["docs"]
    await col.insert_one({"_id": "seed"})
    first_in, stuck_in = asyncio.Event(), asyncio.Event()
    go = asyncio.Event()

    async def first(s: AsyncClientSession) -> None:
        first_in.set()
        await go.wait()

    async def stuck(s: AsyncClientSession) -> None:
        await col.update_one({"_id": "seed"}, {"$set": {"by": "stuck"}}, session=s)
        stuck_in.set()
        await asyncio.Event().wait()  # never finishes (a caller that was given up)

    async def later(s: AsyncClientSession) -> None:
        await col.insert_one({"_id": "later"}, session=s)

    try:
        runs = [asyncio.create_task(in_transaction(c, first))]
        await asyncio.wait_for(first_in.wait(), 30)
        runs += [asyncio.create_task(in_transaction(c, f)) for f in (stuck, later)]

        async def both_queued() -> bool:
            return mongo._committer(c).waiting == 2

        await eventually(both_queued, what="both queued behind the only slot")
        go.set()
        await asyncio.wait_for(stuck_in.wait(), 30)  # the group [stuck, later] is running
        await asyncio.wait_for(mongo.drain_transactions(c, grace=0.2), 30)
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        assert outcomes[0] is None
        assert all(isinstance(o, BaseException) for o in outcomes[1:]), outcomes
        # nothing of the group stayed, and its writes no longer block anyone (an event given
        # up at a stop comes again and touches the same documents)
        other_col = other[col.database.name]["docs"]

        async def fresh(s: AsyncClientSession) -> None:
            await other_col.update_one({"_id": "seed"}, {"$set": {"by": "fresh"}}, session=s)

        await asyncio.wait_for(in_transaction(other, fresh), 30)
        assert [d async for d in other_col.find({})] == [{"_id": "seed", "by": "fresh"}]
    finally:
        await c.close()
        await other.close()


async def test_deferred_inserts_into_several_collections_go_in_one_round_trip(
    stack: LocalStack,
) -> None:
    """A transaction's deferred inserts (and updates, applied after them) are one
    client-level ``bulkWrite`` when they span collections; a duplicate key among them
    still raises ``DuplicateKeyError`` and the transaction leaves nothing behind."""
    commands: list[str] = []

    class Listener(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            commands.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        stack.mongodb_uri, event_listeners=[Listener()]
    )
    try:
        db = client[unique("bulk_")]
        for name in ("a", "b"):
            await db.create_collection(name)

        async def write(session: AsyncClientSession) -> None:
            assert defer_insert(session, db.a, {"_id": 1})
            assert defer_insert(session, db.b, {"_id": 1})
            assert defer_insert(session, db.b, {"_id": 2})

        commands.clear()
        await in_transaction(client, write)
        assert [c for c in commands if c in ("insert", "bulkWrite")] == ["bulkWrite"]
        assert await db.a.count_documents({}) == 1
        assert await db.b.count_documents({}) == 2

        async def write_and_update(session: AsyncClientSession) -> None:
            assert defer_update(session, db.a, {"_id": 5}, {"$inc": {"n": 1}}, upsert=True)
            assert defer_insert(session, db.b, {"_id": 5})
            assert defer_update(session, db.b, {"_id": 5}, {"$set": {"seen": True}})

        commands.clear()
        await in_transaction(client, write_and_update)
        assert [c for c in commands if c in ("insert", "update", "bulkWrite")] == ["bulkWrite"]
        assert await db.a.find_one({"_id": 5}) == {"_id": 5, "n": 1}
        assert await db.b.find_one({"_id": 5}) == {"_id": 5, "seen": True}  # after the insert

        async def again(session: AsyncClientSession) -> None:
            assert defer_insert(session, db.a, {"_id": 3})
            assert defer_insert(session, db.b, {"_id": 2})  # exists

        with pytest.raises(DuplicateKeyError):
            await in_transaction(client, again)
        assert await db.a.count_documents({"_id": 3}) == 0
    finally:
        await client.close()


async def test_write_conflicts_met_by_the_bulk_write_are_retried(
    client: AsyncMongoClient[Doc],
) -> None:
    """Concurrent transactions whose deferred writes (one ``bulkWrite``) conflict are run
    again like any other write conflict: every caller succeeds, each increment counts once."""
    db = client[unique("conflict_")]
    await db.counters.insert_one({"_id": "n", "n": 0})
    await db.create_collection("log")

    async def bump(s: AsyncClientSession) -> None:
        await db.counters.find_one({"_id": "n"}, session=s)
        await asyncio.sleep(0.01)  # overlap with the other callers' transactions
        assert defer_update(s, db.counters, {"_id": "n"}, {"$inc": {"n": 1}})
        assert defer_insert(s, db.log, {})

    await asyncio.gather(*(in_transaction(client, bump) for _ in range(12)))
    assert (await db.counters.find_one({"_id": "n"}) or {})["n"] == 12
    assert await db.log.count_documents({}) == 12


async def test_a_transaction_that_is_only_its_bulk_write_survives_a_retry(
    client: AsyncMongoClient[Doc],
) -> None:
    """A transaction whose first command is the deferred ``bulkWrite`` and that meets a
    write conflict is run again on the same session. PyMongo then puts the session's
    ``readConcern.afterClusterTime`` on the first command, and SecantusDB's ``bulkWrite``
    refuses a read concern: the retry failed with 'bulkWrite.readConcern is an unknown
    field', and routing parked a request on the DLQ after a SIGKILL left such a conflict
    (CI). Transactions run without causal consistency, so nothing is added."""
    db = client[unique("retry_bulk_")]
    await db.cases.insert_one({"_id": "c", "n": 0})
    await db.create_collection("log")
    attempts = 0

    async def only_writes(s: AsyncClientSession) -> None:
        nonlocal attempts
        attempts += 1
        assert defer_update(s, db.cases, {"_id": "c"}, {"$inc": {"n": 1}})
        assert defer_insert(s, db.log, {"attempt": attempts})

    async with client.start_session() as holder:  # another transaction holds the case
        await holder.start_transaction()
        await db.cases.update_one({"_id": "c"}, {"$set": {"held": True}}, session=holder)
        task = asyncio.create_task(in_transaction(client, only_writes))

        async def conflicted() -> bool:
            return attempts >= 2

        await eventually(conflicted, what="a conflicted attempt")
        await holder.abort_transaction()
    await asyncio.wait_for(task, 30)
    assert (await db.cases.find_one({"_id": "c"}) or {})["n"] == 1
    assert await db.log.count_documents({}) == 1
