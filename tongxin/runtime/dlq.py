"""Dead-letter topics: look at parked records and put them back on their topic.

``<topic>.dlq`` records carry the original key, value and headers plus ``x-error``,
``x-attempts`` and ``x-consumer``. Replay republishes them on ``<topic>`` without the
``x-*`` headers (adding ``x-replayed``), so the consumers handle them again once the cause
is fixed; handlers are idempotent, so a record that did succeed somewhere changes nothing.
Replay progress is a consumer group of its own, so each parked record is replayed once.

A replayed event is handled again by every consumer of its topic; those that handled it
before skip it by their processed-event mark, which is kept ``processed_keep_s`` (30 days;
docs/operations.md, "Retention"). A record older than that would be handled twice, so
:func:`replay` refuses to put back anything older than ``max_age`` unless forced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Gauge

from tongxin.contracts.topics import DLQ_SUFFIX
from tongxin.runtime.kafka import PLAINTEXT, KafkaSecurity, Producer, make_admin, make_consumer

log = logging.getLogger(__name__)

REPLAY_GROUP = "tongxin.dlq-replay"
DLQ_HEADERS = ("x-error", "x-attempts", "x-consumer")


@dataclass(frozen=True, slots=True)
class Parked:
    """One record on a dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    error: str
    attempts: str
    consumer: str
    ce_id: str | None
    ce_type: str | None
    # the event's time (its ``ce_time``), else when it was parked
    time: datetime | None = None


def replay_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The original headers without the dead-letter ones, plus a replay counter."""
    count = 0
    out: list[tuple[str, bytes]] = []
    for k, v in headers:
        if k == "x-replayed":
            count = int(v or b"0")
        elif k not in DLQ_HEADERS:
            out.append((k, v))
    return [*out, ("x-replayed", str(count + 1).encode())]


def _event_time(h: dict[str, str], timestamp: int | None) -> datetime | None:
    """The event's own time (``ce_time``), else the DLQ record's timestamp (when parked)."""
    try:
        t = datetime.fromisoformat(h["ce_time"])
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    except (KeyError, ValueError):
        pass
    if timestamp is None or timestamp < 0:
        return None
    return datetime.fromtimestamp(timestamp / 1000, UTC)


def _parked(rec: ConsumerRecord[bytes, bytes]) -> Parked:
    h = {k: v.decode(errors="replace") for k, v in rec.headers}
    return Parked(
        partition=rec.partition,
        offset=rec.offset,
        key=rec.key,
        error=h.get("x-error", ""),
        attempts=h.get("x-attempts", ""),
        consumer=h.get("x-consumer", ""),
        ce_id=h.get("ce_id"),
        ce_type=h.get("ce_type"),
        time=_event_time(h, rec.timestamp),
    )


async def _drain(consumer: AIOKafkaConsumer) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything from the consumer's position to the end of its partitions."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    parts = consumer.assignment()
    end = await consumer.end_offsets(list(parts))
    while True:
        pos = {tp: await consumer.position(tp) for tp in parts}
        if all(pos[tp] >= end[tp] for tp in parts):
            return records
        batch = await consumer.getmany(timeout_ms=1000)
        for recs in batch.values():
            records.extend(recs)


async def _partitions(bootstrap: str, topic: str, security: KafkaSecurity) -> list[int]:
    admin = make_admin(bootstrap, security=security)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for t in described:
        if t.get("topic") == topic and not t.get("error_code"):
            return sorted(p["partition"] for p in t.get("partitions", []))
    raise LookupError(f"no topic {topic}")


async def _assigned(
    bootstrap: str, dlq: str, group: str | None, security: KafkaSecurity
) -> AIOKafkaConsumer:
    consumer = make_consumer(
        bootstrap=bootstrap,
        security=security,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(dlq, p) for p in await _partitions(bootstrap, dlq, security)]
        consumer.assign(tps)
        for tp in tps:
            committed = await consumer.committed(tp) if group else None
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def dlq_name(topic: str) -> str:
    """Accept either ``tongxin.cases.v1`` or ``tongxin.cases.v1.dlq``."""
    return topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX


async def list_parked(
    bootstrap: str,
    topic: str,
    *,
    pending_only: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> list[Parked]:
    """Records on ``topic``'s DLQ (only those not replayed yet, by default)."""
    group = REPLAY_GROUP if pending_only else None
    consumer = await _assigned(bootstrap, dlq_name(topic), group, security)
    try:
        return [_parked(r) for r in await _drain(consumer)]
    finally:
        await consumer.stop()


class TooOld(Exception):
    """Parked records older than the processed-event marks are kept: replayed, they would be
    handled again by the consumers that handled them before (nothing was replayed)."""

    def __init__(self, old: Sequence[Parked], max_age: timedelta) -> None:
        self.old = list(old)
        self.max_age = max_age
        super().__init__(
            f"{len(old)} parked record(s) are older than the processed-event marks are kept "
            f"({max_age}); replayed, consumers that handled them before would do so again"
        )


async def replay(
    bootstrap: str,
    topic: str,
    producer: Producer,
    *,
    security: KafkaSecurity = PLAINTEXT,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> list[Parked]:
    """Republish every not-yet-replayed record of ``topic``'s DLQ; returns what was replayed.

    With ``max_age`` (the processed-event marks' window), raises :class:`TooOld` before
    anything is sent if a record's event is older than that."""
    dlq = dlq_name(topic)
    original = dlq[: -len(DLQ_SUFFIX)]
    consumer = await _assigned(bootstrap, dlq, REPLAY_GROUP, security)
    try:
        records = await _drain(consumer)
        if max_age is not None:
            cutoff = (now or datetime.now(UTC)) - max_age
            parked = [_parked(r) for r in records]
            old = [p for p in parked if p.time is not None and p.time < cutoff]
            if old:
                raise TooOld(old, max_age)
        for rec in records:
            await producer.send_and_wait(
                original,
                value=rec.value,
                key=rec.key,
                headers=replay_headers(rec.headers),
            )
        if records:
            last: dict[TopicPartition, int] = {}
            for rec in records:
                tp = TopicPartition(dlq, rec.partition)
                last[tp] = max(last.get(tp, 0), rec.offset + 1)
            await consumer.commit(last)
        return [_parked(r) for r in records]
    finally:
        await consumer.stop()


async def pending_counts(
    bootstrap: str, topics: Sequence[str], *, security: KafkaSecurity = PLAINTEXT
) -> dict[str, int]:
    """Records parked on each topic's DLQ and not replayed yet (end offset − replay progress).

    Reads offsets only: nothing is consumed and the replay group's position is not moved.
    """
    consumer = make_consumer(
        bootstrap=bootstrap, security=security, group_id=REPLAY_GROUP, enable_auto_commit=False
    )
    try:
        await consumer.start()  # inside: a failed start still closes the client
        counts: dict[str, int] = {}
        for topic in topics:
            dlq = dlq_name(topic)
            try:
                tps = [TopicPartition(dlq, p) for p in await _partitions(bootstrap, dlq, security)]
            except LookupError:
                counts[dlq] = 0
                continue
            end = await consumer.end_offsets(tps)
            begin = await consumer.beginning_offsets(tps)
            total = 0
            for tp in tps:
                done = await consumer.committed(tp)
                total += max(0, end[tp] - max(done or 0, begin[tp]))
            counts[dlq] = total
        return counts
    finally:
        await consumer.stop()


async def watch_pending(
    bootstrap: str,
    topics: Sequence[str],
    gauge: Gauge,
    stopping: asyncio.Event,
    *,
    interval: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Keep ``gauge`` (label ``topic``) at the pending count of each topic's DLQ until
    ``stopping`` is set. A broker that cannot be reached leaves the last values."""
    while not stopping.is_set():
        try:
            for dlq, n in (await pending_counts(bootstrap, topics, security=security)).items():
                gauge.labels(topic=dlq).set(n)
        except Exception as exc:
            log.warning("dlq pending count failed", extra={"error": repr(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
