"""The unit of work on real SecantusDB: one transaction per batch, decided again on
conflicts, split around a failing input, and the outbox handed to the relay."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from tests.support import eventually, unique
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import RequestWithdrawn
from tongxin.devstack.procs import free_port
from tongxin.devstack.servers import SecantusServer
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Busy, Doc, make_client
from tongxin.runtime.outbox import MongoOutbox, OutboxRecord
from tongxin.runtime.uow import (
    Batcher,
    Decision,
    DuplicateWrite,
    Effects,
    Refused,
    UnitOfWork,
)


class Commands(monitoring.CommandListener):
    """Counts the commands a client sends, by name."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@dataclass
class Rig:
    client: AsyncMongoClient[Doc]
    db: AsyncDatabase[Doc]
    uow: UnitOfWork
    handed: list[OutboxRecord] = field(default_factory=list)
    commands: Commands = field(default_factory=Commands)


@pytest.fixture
async def rig(stack: LocalStack) -> AsyncIterator[Rig]:
    commands = Commands()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        stack.mongodb_uri, tz_aware=True, event_listeners=[commands]
    )
    db = client[unique("uow_")]
    await db.create_collection("things")
    await db.create_collection("outbox")
    outbox = MongoOutbox(db, "t.")
    handed: list[OutboxRecord] = []
    outbox.listen(handed.extend)
    yield Rig(client, db, UnitOfWork(client, db.name, outbox), handed, commands)
    await client.close()


def withdrawn(request_id: str) -> Envelope:
    event = RequestWithdrawn(request_id=request_id, reason="r", withdrawn_at=datetime.now(UTC))
    return Envelope.wrap(event, "/test")


async def test_a_batch_commits_in_one_transaction_of_two_commands(rig: Rig) -> None:
    await rig.db.things.insert_one({"_id": "a", "n": 0, "version": 0})

    async def handle(items: Sequence[str]) -> Decision[str]:
        d: Decision[str] = Decision()
        for i, item in enumerate(items):
            d.effects.insert("things", {"_id": item, "n": 1})
            d.effects.emit("tongxin.requests.v1", withdrawn(item))
            d.done(i, f"ok {item}")
        d.effects.replace("things", {"_id": "a", "version": 0}, {"n": 5, "version": 1})
        return d

    rig.commands.names.clear()
    out = await rig.uow.run([f"x{i}" for i in range(50)], handle)
    assert out == [f"ok x{i}" for i in range(50)]
    # the whole batch — 50 inserts, 50 outbox records, a checked replace — is one
    # bulkWrite and its commit
    assert rig.commands.names == ["bulkWrite", "commitTransaction"]
    assert await rig.db.things.count_documents({}) == 51
    assert (await rig.db.things.find_one({"_id": "a"}))["n"] == 5
    assert await rig.db.outbox.count_documents({}) == 1  # the batch's records: one document
    assert await MongoOutbox(rig.db).count_pending() == 50
    # handed to the relay after the commit, not read back
    assert [r.key.decode() for r in rig.handed] == [f"x{i}" for i in range(50)]
    assert all(r.topic == "t.tongxin.requests.v1" for r in rig.handed)


async def test_a_stale_read_is_decided_again_from_fresh_reads(rig: Rig) -> None:
    await rig.db.things.insert_one({"_id": "a", "n": 0, "version": 0})
    decided = 0

    async def handle(items: Sequence[int]) -> Decision[int]:
        nonlocal decided
        decided += 1
        doc = await rig.db.things.find_one({"_id": "a"})
        assert doc is not None
        if decided == 1:  # someone else changes it between our read and our commit
            await rig.db.things.update_one({"_id": "a"}, {"$inc": {"n": 100, "version": 1}})
        d: Decision[int] = Decision()
        n = doc["n"] + sum(items)
        d.effects.replace(
            "things",
            {"_id": "a", "version": doc["version"]},
            {"n": n, "version": doc["version"] + 1},
        )
        for i in range(len(items)):
            d.done(i, n)
        return d

    assert await rig.uow.run([1, 2], handle) == [103, 103]
    assert decided == 2
    assert (await rig.db.things.find_one({"_id": "a"}))["n"] == 103


async def test_a_failing_input_is_split_off_and_the_rest_commits(rig: Rig) -> None:
    seen: list[list[int]] = []

    async def handle(items: Sequence[int]) -> Decision[int]:
        seen.append(list(items))
        if 13 in items:
            raise ValueError("no rule for 13")
        d: Decision[int] = Decision()
        for i, item in enumerate(items):
            d.effects.insert("things", {"_id": item})
            d.done(i, item)
        return d

    settled: list[int] = []

    async def settle(item: int, exc: Exception) -> int | Exception:
        settled.append(item)  # a consumer retries and parks it here, before the rest
        assert not await rig.db.things.find_one({"_id": 14}), "later inputs waited"
        return exc

    out = await rig.uow.run(list(range(10, 20)), handle, settle=settle)
    assert [o for o in out if isinstance(o, Exception)] == [out[3]]
    assert isinstance(out[3], ValueError)
    assert settled == [13]
    ids = sorted([d["_id"] async for d in rig.db.things.find()])
    assert ids == [10, 11, 12, 14, 15, 16, 17, 18, 19]


async def test_an_outage_the_use_case_meets_is_the_whole_batch_s_not_split(rig: Rig) -> None:
    """A use case that cannot finish for a reason of the infrastructure (a ConnectionError:
    notify stopping before a batch's deliveries were sent, a server away) hands it to the
    caller for the whole batch — splitting would decide every half again for nothing (seen:
    notify's SIGTERM spent 8 s halving a poll of 269 records down to one)."""
    calls = 0

    async def handle(items: Sequence[int]) -> Decision[int]:
        nonlocal calls
        calls += 1
        raise ConnectionError("stopping before the deliveries were sent")

    with pytest.raises(ConnectionError):
        await rig.uow.run(list(range(10, 20)), handle)
    assert calls == 1 and rig.uow.stats.splits == 0


async def test_a_refused_input_leaves_out_only_its_own_effects(rig: Rig) -> None:
    async def handle(items: Sequence[str]) -> Decision[str]:
        d: Decision[str] = Decision()
        for i, item in enumerate(items):
            if item == "bad":
                d.refuse(i, Refused("not allowed"))
                continue
            d.effects.insert("things", {"_id": item})
            d.done(i, item)
        return d

    out = await rig.uow.run(["a", "bad", "c"], handle)
    assert out[0] == "a" and out[2] == "c"
    assert isinstance(out[1], Refused)
    assert sorted([d["_id"] async for d in rig.db.things.find()]) == ["a", "c"]


async def test_a_duplicate_insert_is_decided_again_and_then_seen(rig: Rig) -> None:
    await rig.db.things.insert_one({"_id": "taken"})
    looks = 0

    async def handle(items: Sequence[str]) -> Decision[str]:
        nonlocal looks
        looks += 1
        d: Decision[str] = Decision()
        existing = {x["_id"] async for x in rig.db.things.find({"_id": {"$in": list(items)}})}
        # the first decision did not look (as a concurrent replica would not have seen it)
        for i, item in enumerate(items):
            if looks > 1 and item in existing:
                d.done(i, "exists")
                continue
            d.effects.insert("things", {"_id": item})
            d.done(i, "new")
        return d

    assert await rig.uow.run(["new1", "taken"], handle) == ["new", "exists"]
    assert looks == 2
    assert await rig.db.things.count_documents({}) == 2

    async def blind(items: Sequence[str]) -> Decision[str]:
        d: Decision[str] = Decision()
        d.effects.insert("things", {"_id": "taken"})
        d.done(0, "new")
        return d

    out = await rig.uow.run(["again"], blind)  # a use case that never looks: a defect
    assert isinstance(out[0], DuplicateWrite)


async def test_effects_of_a_failed_commit_leave_nothing_and_reach_no_relay(rig: Rig) -> None:
    await rig.db.things.insert_one({"_id": "taken"})

    async def handle(items: Sequence[str]) -> Decision[str]:
        d: Decision[str] = Decision()
        d.effects.insert("things", {"_id": "fresh"})
        d.effects.emit("tongxin.requests.v1", withdrawn("fresh"))
        d.effects.insert("things", {"_id": "taken"})
        d.done(0, "x")
        return d

    out = await rig.uow.run(["one"], handle)
    assert isinstance(out[0], DuplicateWrite)
    assert await rig.db.things.find_one({"_id": "fresh"}) is None
    assert await rig.db.outbox.count_documents({}) == 0
    assert rig.handed == []


async def test_the_batcher_groups_concurrent_callers_into_few_commits(rig: Rig) -> None:
    batches: list[int] = []

    async def handle(items: Sequence[str]) -> Decision[str]:
        batches.append(len(items))
        await asyncio.sleep(0.05)  # a decision that takes a while: callers gather meanwhile
        d: Decision[str] = Decision()
        for i, item in enumerate(items):
            if item == "no":
                d.refuse(i, Refused("refused"))
                continue
            d.effects.insert("things", {"_id": item})
            d.done(i, item.upper())
        return d

    batcher = Batcher(rig.uow, handle, name="test", max_batch=16)
    callers = [f"c{i}" for i in range(40)] + ["no"]
    results = await asyncio.gather(*(batcher.submit(c) for c in callers), return_exceptions=True)
    assert results[:40] == [f"C{i}" for i in range(40)]
    assert isinstance(results[40], Refused)
    assert sum(batches) == 41 and max(batches) <= 16
    assert len(batches) <= 5, batches  # 41 callers, not 41 transactions
    assert await rig.db.things.count_documents({}) == 40
    await batcher.close()


async def test_a_caller_whose_time_runs_out_in_the_queue_gets_busy_and_nothing_is_stored(
    rig: Rig,
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handle(items: Sequence[str]) -> Decision[str]:
        started.set()
        await release.wait()
        d: Decision[str] = Decision()
        for i, item in enumerate(items):
            d.effects.insert("things", {"_id": item})
            d.done(i, item)
        return d

    batcher = Batcher(rig.uow, handle, name="test")
    first = asyncio.create_task(batcher.submit("first"))
    await started.wait()  # the first batch is deciding; the next caller queues
    with pytest.raises(Busy):
        await batcher.submit("late", deadline=time.monotonic() + 0.2)
    release.set()
    assert await first == "first"
    assert [d["_id"] async for d in rig.db.things.find()] == ["first"]
    await batcher.close()


async def test_an_empty_decision_writes_nothing(rig: Rig) -> None:
    async def handle(items: Sequence[str]) -> Decision[str]:
        d: Decision[str] = Decision()
        for i in range(len(items)):
            d.done(i, "nothing to do")
        return d

    rig.commands.names.clear()
    assert await rig.uow.run(["a"], handle) == ["nothing to do"]
    assert rig.commands.names == []
    assert not Effects()


async def test_write_conflicts_are_decided_again_and_each_change_counts_once(rig: Rig) -> None:
    """Concurrent batches that read and write the same document (SecantusDB also makes
    concurrent transactions on distinct documents conflict) are decided again on fresh
    reads: every caller succeeds, each increment counts once."""
    await rig.db.things.insert_one({"_id": "n", "n": 0, "version": 0})

    async def bump(items: Sequence[int]) -> Decision[int]:
        doc = await rig.db.things.find_one({"_id": "n"})
        assert doc is not None
        await asyncio.sleep(0.01)  # overlap with the other callers
        d: Decision[int] = Decision()
        d.effects.replace(
            "things",
            {"_id": "n", "version": doc["version"]},
            {"n": doc["n"] + 1, "version": doc["version"] + 1},
        )
        d.effects.insert("things", {"k": items[0]})
        d.done(0, doc["n"] + 1)
        return d

    out = await asyncio.gather(*(rig.uow.run([i], bump) for i in range(12)))
    assert sorted(o[0] for o in out) == list(range(1, 13))  # type: ignore[type-var]
    assert (await rig.db.things.find_one({"_id": "n"}))["n"] == 12
    assert await rig.db.things.count_documents({"k": {"$exists": True}}) == 12
    assert rig.uow.stats.redecided > 0  # they did conflict


async def test_a_batch_that_is_only_its_bulk_write_survives_a_conflict(rig: Rig) -> None:
    """A transaction whose first command is the bulkWrite and that meets a write conflict
    (another transaction holds the document) commits once the holder lets go — on a new
    session each attempt, so no ``readConcern`` that SecantusDB's bulkWrite refuses rides
    along (the cause of a request parked after a SIGKILL, CI)."""
    await rig.db.things.insert_one({"_id": "c", "n": 0})
    attempts = 0

    async def only_writes(items: Sequence[str]) -> Decision[str]:
        nonlocal attempts
        attempts += 1
        d: Decision[str] = Decision()
        d.effects.update("things", {"_id": "c"}, {"$inc": {"n": 1}})
        d.effects.insert("things", {"attempt": attempts})
        d.done(0, "ok")
        return d

    async with rig.client.start_session() as holder:  # another transaction holds it
        await holder.start_transaction()
        await rig.db.things.update_one({"_id": "c"}, {"$set": {"held": True}}, session=holder)
        task = asyncio.create_task(rig.uow.run(["x"], only_writes))

        async def conflicted() -> bool:
            return attempts >= 2

        await eventually(conflicted, what="a conflicted attempt")
        await holder.abort_transaction()
    assert await asyncio.wait_for(task, 30) == ["ok"]
    assert (await rig.db.things.find_one({"_id": "c"}))["n"] == 1
    assert await rig.db.things.count_documents({"attempt": {"$exists": True}}) == 1


async def test_a_stopped_database_is_reported_at_once_and_the_next_batch_commits() -> None:
    """The database being away goes to the caller at once (HTTP answers 503) instead of
    being retried like a conflict; once it is back, batches commit again."""
    data = Path(tempfile.mkdtemp(prefix="tongxin-uow-"))
    server = SecantusServer(data, free_port())
    server.start()
    client = make_client(server.uri, timeout_ms=2000)
    try:
        db = client.uow
        uow = UnitOfWork(client, db.name, MongoOutbox(db))

        async def write(items: Sequence[int]) -> Decision[int]:
            d: Decision[int] = Decision()
            for i, item in enumerate(items):
                d.effects.insert("docs", {"n": item})
                d.done(i, item)
            return d

        assert await uow.run([1], write) == [1]
        await asyncio.to_thread(server.stop)
        started = time.monotonic()
        with pytest.raises(ConnectionFailure):
            await uow.run([2, 3], write)
        assert time.monotonic() - started < uow.conflict_retry_s  # not retried as a conflict
        await asyncio.to_thread(server.start)
        assert await uow.run([4, 5], write) == [4, 5]
        assert sorted([d["n"] async for d in db.docs.find()]) == [1, 4, 5]
    finally:
        await client.close()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
