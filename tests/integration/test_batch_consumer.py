"""The batch consumer against real Kafka and SecantusDB: a poll is one unit of work with
its processed-event marks; redeliveries change nothing; a poison record is split off,
retried, parked, and the rest of its batch commits after it — per key in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import RequestSubmitted, Submitter
from tongxin.contracts.topics import dlq_topic
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.consumer import PROCESSED, BatchConsumer, RetryPolicy, mark_key
from tongxin.runtime.kafka import ensure_topics, make_producer
from tongxin.runtime.metrics import Metrics
from tongxin.runtime.mongo import PROCESSED_INDEXES, Doc, ensure_indexes, make_client
from tongxin.runtime.outbox import MongoOutbox
from tongxin.runtime.uow import Decision, Refused, UnitOfWork

FAST = RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2)
TYPE = RequestSubmitted.ce_type()


def submitted(request_id: str, title: str = "楼道垃圾") -> Envelope:
    ev = RequestSubmitted(
        request_id=request_id,
        channel="app",
        category="sanitation",
        title=title,
        description="楼道垃圾无人清理",
        community="community:liyuan",
        submitter=Submitter(name="张三"),
        submitted_at=datetime.now(UTC),
    )
    return Envelope.wrap(ev, "/tests")


@dataclass
class Rig:
    stack: LocalStack
    topic: str
    producer: AIOKafkaProducer
    client: AsyncMongoClient[Doc]
    db: AsyncDatabase[Doc]
    uow: UnitOfWork
    metrics: Metrics

    def consumer(self, handle, group: str | None = None, mark: bool = True) -> BatchConsumer:  # type: ignore[no-untyped-def]
        group = group or unique("g.")
        return BatchConsumer(
            mark=mark,
            name=group,
            group_id=group,
            bootstrap=self.stack.bootstrap,
            topics=[self.topic],
            handle=handle,
            types=frozenset({TYPE}),
            uow=self.uow,
            producer=self.producer,
            metrics=self.metrics,
            policy=FAST,
        )

    async def send(self, *envs: Envelope, raw: bytes | None = None) -> None:
        for env in envs:
            key, value, headers = encode_record(env)
            await self.producer.send(self.topic, value=value, key=key, headers=headers)
        if raw is not None:
            await self.producer.send(self.topic, value=raw, key=b"poison")
        await self.producer.flush()


@pytest.fixture
async def rig(stack: LocalStack) -> AsyncIterator[Rig]:
    topic = unique("bc.")
    await ensure_topics(stack.bootstrap, [(topic, 3), (dlq_topic(topic), 1)])
    producer = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await producer.start()
    client = make_client(stack.mongodb_uri)
    db = client[unique("bc_")]
    await ensure_indexes(db, PROCESSED_INDEXES)
    await db.create_collection("seen")
    uow = UnitOfWork(client, db.name, MongoOutbox(db))
    yield Rig(stack, topic, producer, client, db, uow, Metrics("test"))
    await producer.stop()
    await client.close()


def recorder(rig: Rig, batches: list[list[str]]):  # type: ignore[no-untyped-def]
    """A handler that records each event (request id, title) in one insert per batch."""

    async def handle(envs: Sequence[Envelope]) -> Decision[None]:
        batches.append([e.key for e in envs])
        d: Decision[None] = Decision()
        for i, env in enumerate(envs):
            if env.data["title"] == "refuse":
                d.refuse(i, Refused("no such case"))
                continue
            if env.data["title"] == "boom":
                raise RuntimeError("a bug met this record")
            d.effects.insert("seen", {"key": env.key, "title": env.data["title"], "at": i})
            d.done(i, None)
        return d

    return handle


async def test_a_poll_is_one_unit_of_work_and_redelivery_changes_nothing(rig: Rig) -> None:
    batches: list[list[str]] = []
    envs = [submitted(f"R-{i}") for i in range(60)]
    await rig.send(*envs)
    group = unique("g.")
    c = rig.consumer(recorder(rig, batches), group)
    await c.start()
    try:

        async def all_seen() -> bool:
            return await rig.db.seen.count_documents({}) == 60

        await eventually(all_seen, timeout=60, what="60 records handled")
    finally:
        await c.stop()
    assert len(batches) < 60, "records were handled in batches, not one by one"
    assert await rig.db[PROCESSED].count_documents({"consumer": group}) == 60

    # the same records again (a crash before the offsets were committed): marks skip them
    await rig.send(*envs)
    again = rig.consumer(recorder(rig, batches), group)
    before = len(batches)
    await again.start()
    try:

        async def skipped() -> bool:
            return sample(rig.metrics, group, "duplicate") == 60

        await eventually(skipped, timeout=60, what=f"60 duplicates skipped by {group}")
    finally:
        await again.stop()
    assert len(batches) == before, "no batch reached the handler"
    assert await rig.db.seen.count_documents({}) == 60


async def test_poison_is_split_off_parked_and_its_key_stays_in_order(rig: Rig) -> None:
    batches: list[list[str]] = []
    envs = [
        submitted("K-1", "first"),
        submitted("K-1", "boom"),  # fails every attempt: parked
        submitted("K-1", "after"),  # same key, later: must commit after the parking
        submitted("K-2", "refuse"),  # refused by the domain: parked at once, not marked
        submitted("K-3", "fine"),
    ]
    await rig.send(*envs, raw=b"\x00 not an event")
    c = rig.consumer(recorder(rig, batches))
    await c.start()
    try:

        async def done() -> bool:
            return await rig.db.seen.count_documents({}) == 3

        await eventually(done, timeout=60, what="the good records")

        async def parked() -> list[str]:
            recs = await read_topic(rig.stack.bootstrap, dlq_topic(rig.topic), timeout=5)
            return [headers_of(r).get("x-error", "") for r in recs] if len(recs) >= 3 else []

        errors = await eventually(parked, timeout=60, what="3 records parked")
    finally:
        await c.stop()
    assert sorted(e.split(":")[0] for e in errors) == [
        "InvalidEnvelope",
        "Refused",
        "RuntimeError",
    ]
    titles = [d["title"] async for d in rig.db.seen.find({"key": "K-1"}).sort("_id", 1)]
    assert titles == ["first", "after"]
    # parked records are not marked handled: a replay after the fix applies them
    marked = {d["event_id"] async for d in rig.db[PROCESSED].find()}
    assert mark_key(envs[1]) not in marked and mark_key(envs[3]) not in marked
    assert mark_key(envs[0]) in marked and mark_key(envs[2]) in marked


async def test_the_database_away_is_waited_out_never_parked(rig: Rig) -> None:
    calls = 0
    from pymongo.errors import AutoReconnect

    async def flaky(envs: Sequence[Envelope]) -> Decision[None]:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise AutoReconnect("database restarting")
        d: Decision[None] = Decision()
        for i, env in enumerate(envs):
            d.effects.insert("seen", {"key": env.key})
            d.done(i, None)
        return d

    await rig.send(submitted("D-1"))
    c = rig.consumer(flaky)
    await c.start()
    try:

        async def handled() -> bool:
            return await rig.db.seen.count_documents({"key": "D-1"}) == 1

        await eventually(handled, timeout=60, what="handled once the database is back")
    finally:
        await c.stop()
    assert calls == 4
    assert await read_topic(rig.stack.bootstrap, dlq_topic(rig.topic), timeout=3) == []


async def test_offsets_are_committed_only_after_the_batch_committed(rig: Rig) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(envs: Sequence[Envelope]) -> Decision[None]:
        started.set()
        await release.wait()
        d: Decision[None] = Decision()
        for i in range(len(envs)):
            d.done(i, None)
        return d

    group = unique("g.")
    await rig.send(submitted("S-1"))
    c = rig.consumer(slow, group)
    await c.start()
    try:
        await asyncio.wait_for(started.wait(), 30)
        assert await committed_total(rig, group) == 0  # in hand, not committed
        release.set()

        async def one() -> bool:
            return await committed_total(rig, group) == 1

        await eventually(one, what="offset committed")
    finally:
        release.set()
        await c.stop()


async def committed_total(rig: Rig, group: str) -> int:
    c = AIOKafkaConsumer(bootstrap_servers=rig.stack.bootstrap, group_id=group)
    await c.start()
    try:
        total = 0
        for p in range(3):
            total += await c.committed(TopicPartition(rig.topic, p)) or 0
        return total
    finally:
        await c.stop()


def sample(metrics: Metrics, consumer: str, outcome: str) -> float:
    total = 0.0
    for m in metrics.events_consumed.collect():
        for s in m.samples:
            if (
                s.name.endswith("_total")
                and s.labels.get("consumer") == consumer
                and s.labels.get("outcome") == outcome
            ):
                total += s.value
    return total


async def test_a_stop_gives_up_a_batch_stuck_past_the_grace_and_it_comes_again(rig: Rig) -> None:
    """At a stop the batch in hand gets ``stop_grace``; one stuck longer (a commit queued
    behind a backlog) is cancelled — its transaction never commits — and, its offsets not
    committed, it is delivered again to the next member."""
    stuck_started = asyncio.Event()
    cancelled: list[str] = []
    second_run = False

    async def handle(envs: Sequence[Envelope]) -> Decision[None]:
        if not second_run:
            stuck_started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.extend(e.key for e in envs)
                raise
        d: Decision[None] = Decision()
        for i, env in enumerate(envs):
            d.effects.insert("seen", {"key": env.key})
            d.done(i, None)
        return d

    group = unique("g.")
    await rig.send(submitted("G-1"))
    c = rig.consumer(handle, group)
    c.stop_grace = 0.5
    await c.start()
    try:
        await asyncio.wait_for(stuck_started.wait(), 30)
    finally:
        await asyncio.wait_for(c.stop(), 30)  # bounded by the grace, not the stuck batch
    assert cancelled == ["G-1"]
    assert await committed_total(rig, group) == 0
    assert await rig.db.seen.count_documents({}) == 0
    second_run = True
    again = rig.consumer(handle, group)
    await again.start()
    try:

        async def handled() -> bool:
            return await rig.db.seen.count_documents({"key": "G-1"}) == 1

        await eventually(handled, timeout=60, what="the given-up record again")
    finally:
        await again.stop()


async def test_a_consumer_whose_use_case_knows_repeats_writes_no_marks(rig: Rig) -> None:
    """``mark=False``: no processed-event marks are read or written — the use case itself
    recognises an event it applied (here: by its id under a unique index)."""
    applied: list[str] = []

    async def idempotent(envs: Sequence[Envelope]) -> Decision[None]:
        d: Decision[None] = Decision()
        known = {x["_id"] async for x in rig.db.seen.find({"_id": {"$in": [e.id for e in envs]}})}
        for i, env in enumerate(envs):
            if env.id not in known:
                d.effects.insert("seen", {"_id": env.id, "key": env.key})
                d.effects.on_commit(lambda env=env: applied.append(env.id))  # type: ignore[misc]
            d.done(i, None)
        return d

    group = unique("g.")
    env = submitted("N-1")
    c = rig.consumer(idempotent, group, mark=False)
    await c.start()
    try:
        for n in (1, 2):  # the same event again later (a relay's repeat): another poll
            await rig.send(env)

            async def handled(n: int = n) -> bool:
                return sample(rig.metrics, group, "handled") == n

            await eventually(handled, timeout=60, what=f"record {n} handled")
    finally:
        await c.stop()
    assert applied == [env.id]
    assert await rig.db.seen.count_documents({}) == 1
    assert await rig.db[PROCESSED].count_documents({"consumer": group}) == 0
