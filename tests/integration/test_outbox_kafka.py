"""The transactional outbox against real SecantusDB and Kafka."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient

from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import RequestSubmitted, Submitter
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.kafka import RenewingProducer, ensure_topics, make_producer
from tongxin.runtime.mongo import Doc, ensure_indexes
from tongxin.runtime.outbox import (
    OUTBOX_INDEXES,
    KafkaPublisher,
    MongoOutbox,
    MongoRelayLease,
    OutboxRelay,
)
from tongxin.runtime.uow import DuplicateWrite, Effects, UnitOfWork


def submitted(request_id: str) -> Envelope:
    ev = RequestSubmitted(
        request_id=request_id,
        channel="hotline",
        category="employment",
        title="求职帮扶",
        description="希望得到就业帮扶信息",
        community="community:chengdong",
        submitter=Submitter(name="李四", phone="13812345678"),
        submitted_at=datetime.now(UTC),
    )
    return Envelope.wrap(ev, "/tongxin/intake")


TOPIC = "tongxin.requests.v1"


async def fresh_outbox(
    stack: LocalStack, client: AsyncMongoClient[Doc]
) -> tuple[Any, str, MongoOutbox]:
    """A database and topic prefix of this test alone, with the outbox on them."""
    db = client[unique("it_")]
    await ensure_indexes(db, OUTBOX_INDEXES)
    prefix = unique("t.") + "."
    await ensure_topics(stack.bootstrap, [(prefix + TOPIC, 3)])
    return db, prefix, MongoOutbox(db, prefix)


async def test_committed_records_are_published_in_order_and_aborted_ones_never(
    stack: LocalStack, clients: tuple[AsyncMongoClient[Doc], AIOKafkaProducer]
) -> None:
    client, producer = clients
    db, prefix, outbox = await fresh_outbox(stack, client)
    events = [submitted("YS-20260101-000001") for _ in range(5)]

    uow = UnitOfWork(client, db.name, outbox)
    fx = Effects()
    fx.insert("requests", {"_id": "YS-20260101-000001"})
    for e in events:
        fx.emit(TOPIC, e)
    await uow.commit(fx)

    aborted = Effects()  # its write fails: nothing of it stays, its event included
    aborted.emit(TOPIC, submitted("YS-aborted"))
    aborted.insert("requests", {"_id": "YS-20260101-000001"})
    with pytest.raises(DuplicateWrite):
        await uow.commit(aborted)
    assert await outbox.count_pending() == 5

    relay = OutboxRelay(outbox, KafkaPublisher(producer))
    assert await relay.relay_once() == 5
    assert await outbox.count_pending() == 0
    assert await relay.relay_once() == 0  # nothing is published twice

    records = await read_topic(stack.bootstrap, prefix + TOPIC, min_count=5)
    assert [headers_of(r)["ce_id"] for r in records] == [e.id for e in events]  # one key: in order
    for r in records:
        h = headers_of(r)
        assert r.key == b"YS-20260101-000001"
        assert h["ce_type"] == "tongxin.request.submitted.v1"
        assert h["ce_source"] == "/tongxin/intake"
        assert h["ce_specversion"] == "1.0"
        assert h["content-type"] == "application/json"
        assert "ce_time" in h
    assert all(b"YS-aborted" not in r.value for r in records)


async def test_two_replicas_relays_publish_each_record_once(
    stack: LocalStack, clients: tuple[AsyncMongoClient[Doc], AIOKafkaProducer]
) -> None:
    """With a relay lease, two replicas of a service do not both publish the outbox."""
    client, producer = clients
    db, prefix, outbox = await fresh_outbox(stack, client)
    relays = [
        OutboxRelay(
            MongoOutbox(db, prefix),
            KafkaPublisher(producer),
            poll_interval=0.05,
            lease=MongoRelayLease(db, owner, ttl=2.0),
        )
        for owner in ("replica-a", "replica-b")
    ]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    events = [submitted(f"YS-20260101-{i:06d}") for i in range(40)]
    uow = UnitOfWork(client, db.name, outbox)
    for e in events:
        fx = Effects()
        fx.emit(TOPIC, e)
        await uow.commit(fx)
        for r in relays:
            r.nudge()
    await eventually(lambda: _none_pending(outbox), what="outbox drained")
    for r in relays:
        r.stop()
    await asyncio.gather(*tasks)
    records = await read_topic(stack.bootstrap, prefix + TOPIC, min_count=40)
    ids = [headers_of(r)["ce_id"] for r in records]
    assert sorted(ids) == sorted(e.id for e in events)  # each exactly once


async def _none_pending(outbox: MongoOutbox) -> bool:
    return await outbox.count_pending() == 0


async def test_committed_records_are_handed_to_the_relay_without_a_read_back(
    stack: LocalStack, clients: tuple[AsyncMongoClient[Doc], AIOKafkaProducer]
) -> None:
    """The service wiring: each commit hands its records to the relay, which publishes them
    without reading them back; a record another replica committed (not handed to this
    process) is found by the relay's periodic read."""
    client, producer = clients
    db, prefix, outbox = await fresh_outbox(stack, client)
    reads = 0
    pending = outbox.pending

    async def counted(limit: int) -> list[Any]:
        nonlocal reads
        reads += 1
        return await pending(limit)

    outbox.pending = counted  # type: ignore[method-assign]
    relay = OutboxRelay(outbox, KafkaPublisher(producer), poll_interval=0.05, idle_poll_max=60.0)
    outbox.listen(relay.handoff)
    task = asyncio.create_task(relay.run())
    await eventually(lambda: _true(reads == 1), what="the relay's first read")
    events = [submitted(f"YS-20260102-{i:06d}") for i in range(20)]
    uow = UnitOfWork(client, db.name, outbox)
    for e in events:
        fx = Effects()
        fx.emit(TOPIC, e)
        await uow.commit(fx)
    await eventually(lambda: _none_pending(outbox), what="handed-off records marked sent")
    assert reads == 1

    other = MongoOutbox(db, prefix)  # another replica's commit: this relay is not told
    outside = submitted("YS-20260102-outside")
    await UnitOfWork(client, db.name, other).commit(_emitting(outside))
    relay.idle_poll_max = 0.2  # its next periodic read comes soon
    relay.nudge()
    await eventually(lambda: _none_pending(outbox), what="the other replica's record published")
    assert reads >= 2
    relay.stop()
    await task

    records = await read_topic(stack.bootstrap, prefix + TOPIC, min_count=21)
    ids = [headers_of(r)["ce_id"] for r in records]
    assert sorted(ids) == sorted([e.id for e in events] + [outside.id])  # each exactly once


def _emitting(env: Envelope) -> Effects:
    fx = Effects()
    fx.emit(TOPIC, env)
    return fx


async def _true(value: bool) -> bool:
    return value


async def test_a_producer_out_of_sequence_with_the_broker_is_replaced_and_nothing_waits(
    stack: LocalStack, clients: tuple[AsyncMongoClient[Doc], AIOKafkaProducer]
) -> None:
    """After a broker restart an idempotent producer's sequence numbers can disagree with
    the broker's for a partition: every later batch for it fails with
    OutOfOrderSequenceNumber and aiokafka never recovers (its records waited in the outbox
    until the process restarted). The renewing producer replaces itself and the relay's
    retry publishes them."""
    if stack.broker_kind == "tansu":
        pytest.skip("tansu refuses idempotent producers: no sequence numbers to lose")
    client, _ = clients
    _db, prefix, outbox = await fresh_outbox(stack, client)
    producer = RenewingProducer(lambda: make_producer(stack.bootstrap, idempotence=True))
    await producer.start()
    try:
        topic = prefix + TOPIC
        first = await producer.send_and_wait(topic, value=b"warm-up", key=b"k", partition=0)
        broken = producer.current
        # what the restart left behind: the producer's next sequence for partition 0 is
        # ahead of what the broker expects (aiokafka internals: the only way to get there
        # without a broker restart's timing)
        txn = broken._txn_manager
        assert txn is not None, "the producer must be idempotent for this test"
        txn.increment_sequence_number(TopicPartition(first.topic, first.partition), 7)

        events = [submitted(f"YS-20260101-{i:06d}") for i in range(12)]

        fx = Effects()
        for e in events:
            fx.emit(TOPIC, e)
        await UnitOfWork(client, _db.name, outbox).commit(fx)
        relay = OutboxRelay(outbox, KafkaPublisher(producer), poll_interval=0.05)
        task = asyncio.create_task(relay.run())
        try:
            await eventually(
                lambda: _no_pending(outbox), timeout=30, what="the outbox is published"
            )
        finally:
            relay.stop()
            await task
        assert producer.renewals == 1
        assert producer.current is not broken
        records = await read_topic(stack.bootstrap, topic, min_count=len(events) + 1)
        published = {headers_of(r).get("ce_id") for r in records}
        assert {e.id for e in events} <= published
        on_zero = [r for r in records if r.partition == 0 and r.value != b"warm-up"]
        assert on_zero, "no event went to the partition whose sequence was broken"
    finally:
        await producer.stop()


async def _no_pending(outbox: MongoOutbox) -> bool:
    return await outbox.count_pending() == 0
