"""The consumer runner against real Kafka and SecantusDB: commit after handling, idempotent
redelivery, poison records parked on the DLQ while the partition moves on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession

from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import RequestSubmitted, Submitter
from tongxin.contracts.topics import dlq_topic
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.consumer import ConsumerRunner, PermanentError, RetryPolicy
from tongxin.runtime.kafka import ensure_topics, make_producer
from tongxin.runtime.metrics import Metrics
from tongxin.runtime.mongo import PROCESSED_INDEXES, Doc, ensure_indexes, handle_once, make_client

FAST = RetryPolicy(max_attempts=3, initial=0.05, maximum=0.2)


def submitted(request_id: str) -> Envelope:
    ev = RequestSubmitted(
        request_id=request_id,
        channel="app",
        category="sanitation",
        title="楼道垃圾",
        description="楼道垃圾无人清理",
        community="community:liyuan",
        submitter=Submitter(name="张三"),
        submitted_at=datetime.now(UTC),
    )
    return Envelope.wrap(ev, "/tests")


@pytest.fixture
async def topic(stack: LocalStack) -> str:
    name = unique("it.")
    await ensure_topics(stack.bootstrap, [(name, 1), (dlq_topic(name), 1)])
    return name


@pytest.fixture
async def producer(stack: LocalStack) -> AsyncIterator[AIOKafkaProducer]:
    p = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def mongo(stack: LocalStack) -> AsyncIterator[AsyncMongoClient[Doc]]:
    client = make_client(stack.mongodb_uri)
    yield client
    await client.close()


async def send(producer: AIOKafkaProducer, topic: str, env: Envelope) -> None:
    key, value, headers = encode_record(env)
    await producer.send_and_wait(topic, value=value, key=key, headers=headers)


async def committed(stack: LocalStack, group: str, topic: str) -> int | None:
    c = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group)
    await c.start()
    try:
        return await c.committed(TopicPartition(topic, 0))
    finally:
        await c.stop()


def runner(
    stack: LocalStack, topic: str, producer: AIOKafkaProducer, handlers: dict, group: str
) -> ConsumerRunner:
    return ConsumerRunner(
        name=group,
        group_id=group,
        bootstrap=stack.bootstrap,
        topics=[topic],
        handlers=handlers,
        producer=producer,
        metrics=Metrics("test"),
        policy=FAST,
    )


async def test_offsets_are_committed_only_after_handling(
    stack: LocalStack, topic: str, producer: AIOKafkaProducer
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    handled: list[str] = []

    async def slow(env: Envelope) -> None:
        started.set()
        await release.wait()
        handled.append(env.id)

    env = submitted("YS-1")
    group = unique("g.")
    r = runner(stack, topic, producer, {env.type: slow}, group)
    await r.start()
    try:
        await send(producer, topic, env)
        await asyncio.wait_for(started.wait(), 30)
        assert await committed(stack, group, topic) is None  # in hand, not committed
        release.set()
        await eventually(lambda: _eq(committed(stack, group, topic), 1), what="offset 1 committed")
        assert handled == [env.id]
    finally:
        release.set()
        await r.stop()


async def _eq(coro, expected) -> bool:  # type: ignore[no-untyped-def]
    return (await coro) == expected


async def test_redelivered_event_changes_nothing(
    stack: LocalStack,
    topic: str,
    producer: AIOKafkaProducer,
    mongo: AsyncMongoClient[Doc],
) -> None:
    db = mongo[unique("it_")]
    await ensure_indexes(db, PROCESSED_INDEXES)
    group = unique("g.")

    async def count(env: Envelope) -> None:
        async def apply(session: AsyncClientSession) -> None:
            await db.counters.update_one(
                {"_id": env.key}, {"$inc": {"n": 1}}, upsert=True, session=session
            )

        await handle_once(mongo, db, group, env.id, apply)

    env = submitted("YS-2")
    r = runner(stack, topic, producer, {env.type: count}, group)
    await r.start()
    try:
        for _ in range(3):  # the same event delivered three times
            await send(producer, topic, env)
        await eventually(lambda: _eq(committed(stack, group, topic), 3), what="3 handled")
        lag = r.metrics.registry.get_sample_value(
            "tongxin_consumer_lag", {"consumer": group, "topic": topic, "partition": "0"}
        )
        assert lag == 0
    finally:
        await r.stop()
    doc = await db.counters.find_one({"_id": "YS-2"})
    assert doc is not None and doc["n"] == 1
    assert await db.processed_events.count_documents({"event_id": env.id}) == 1


async def test_poison_records_are_parked_and_the_partition_moves_on(
    stack: LocalStack, topic: str, producer: AIOKafkaProducer
) -> None:
    group = unique("g.")
    good, bad = submitted("YS-good"), submitted("YS-bad")
    handled: list[str] = []
    calls: dict[str, int] = {}

    invalid = submitted("YS-invalid")

    async def handler(env: Envelope) -> None:
        calls[env.key] = calls.get(env.key, 0) + 1
        if env.key == "YS-bad":
            raise ValueError("cannot handle this one")
        if env.key == "YS-invalid":
            raise PermanentError("refused by validation")
        handled.append(env.key)

    # 1. not a CloudEvent at all, 2. a record the handler always fails on,
    # 3. one the handler refuses for good (no retries), 4. a good one
    await producer.send_and_wait(topic, value=b"\xff not json", key=b"junk")
    await send(producer, topic, bad)
    await send(producer, topic, invalid)
    await send(producer, topic, good)
    r = runner(stack, topic, producer, {good.type: handler}, group)
    await r.start()
    try:
        await eventually(lambda: _eq(committed(stack, group, topic), 4), what="all 4 committed")
    finally:
        await r.stop()
    assert handled == ["YS-good"]
    assert calls["YS-bad"] == FAST.max_attempts
    assert calls["YS-invalid"] == 1
    parked = await read_topic(stack.bootstrap, dlq_topic(topic), min_count=3)
    assert len(parked) == 3
    junk, failed, refused = sorted(parked, key=lambda r: r.offset)
    h = headers_of(refused)
    assert h["x-attempts"] == "1" and "PermanentError: refused by validation" in h["x-error"]
    assert junk.value == b"\xff not json" and junk.key == b"junk"
    h = headers_of(junk)
    assert h["x-consumer"] == group and h["x-attempts"] == "1"
    assert "InvalidEnvelope" in h["x-error"]
    h = headers_of(failed)
    assert h["x-attempts"] == str(FAST.max_attempts)
    assert "ValueError: cannot handle this one" in h["x-error"]
    assert h["ce_id"] == bad.id  # the original record, headers and all
    assert failed.value == encode_record(bad)[1]


async def test_a_stop_gives_up_records_stuck_past_the_grace_and_they_come_again(
    stack: LocalStack, topic: str, producer: AIOKafkaProducer
) -> None:
    quick, stuck = submitted("YS-3a"), submitted("YS-3b")
    stuck_started = asyncio.Event()
    cancelled: list[str] = []
    handled: list[str] = []
    quick_done = asyncio.Event()

    async def handle(env: Envelope) -> None:
        if env.id == stuck.id and not handled.count("again"):
            stuck_started.set()
            try:
                await asyncio.Event().wait()  # e.g. a transaction queued behind a backlog
            except asyncio.CancelledError:
                cancelled.append(env.id)
                raise
        handled.append(env.id)
        if env.id == quick.id:
            quick_done.set()

    group = unique("g.")
    r = runner(stack, topic, producer, {quick.type: handle}, group)
    r.stop_grace = 0.5
    await r.start()
    try:
        await send(producer, topic, quick)
        await send(producer, topic, stuck)
        await asyncio.wait_for(stuck_started.wait(), 30)
        await asyncio.wait_for(quick_done.wait(), 30)
    finally:
        await asyncio.wait_for(r.stop(), 30)  # bounded by the grace, not by the stuck record
    assert cancelled == [stuck.id]
    assert await committed(stack, group, topic) == 1  # only what was handled
    handled.append("again")
    again = runner(stack, topic, producer, {quick.type: handle}, group)
    await again.start()
    try:
        await eventually(lambda: _eq(committed(stack, group, topic), 2), what="stuck one again")
    finally:
        await again.stop()
    assert handled == [quick.id, "again", stuck.id]
