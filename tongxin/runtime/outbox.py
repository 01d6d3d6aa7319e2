"""Transactional outbox: the business write and its event commit together; a relay publishes.

The unit of work (``tongxin.runtime.uow``) inserts the encoded records with a batch's other
writes, in one transaction (``MongoOutbox.documents``). The ``OutboxRelay`` publishes
pending records with ``acks=all`` and marks them sent. A record published but not yet
marked (the process died in between) is published again after a restart: delivery is
at-least-once and consumers deduplicate by event id.

Records committed by this process are handed to its relay in memory once their transaction
commits, so while the relay knows the collection holds nothing else it publishes them
without reading them back; it reads the collection at start, after a failed publish, when
it (re)gains the lease, and every ``idle_poll_max`` seconds for records other replicas left.
Marks are written together, at most every ``mark_interval`` seconds (and before every read
and at stop): a crash republishes at most that much, which consumers ignore by event id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tongxin.contracts.envelope import Headers, encode_record
from tongxin.runtime.kafka import Producer
from tongxin.runtime.metrics import Metrics
from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.uow import Emit

log = logging.getLogger(__name__)

OUTBOX = "outbox"
RELAY_LEASE = "outbox_relay_lease"
OUTBOX_INDEXES = [
    IndexSpec(OUTBOX, [("sent", 1), ("seq", 1)], name="pending_in_order"),
    IndexSpec(OUTBOX, [("sent_at", 1)]),
]


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One encoded event waiting to be published; ``entry`` is the outbox document it is
    kept in (a committed batch's records share one; empty: a document of its own)."""

    id: str
    topic: str
    key: bytes
    value: bytes
    headers: Headers
    type: str
    entry: str = ""

    @property
    def entry_id(self) -> str:
        """The outbox document this record is marked sent with."""
        return self.entry or self.id


class OutboxStore(Protocol):
    """Where pending records wait (port)."""

    async def pending(self, limit: int) -> list[OutboxRecord]:
        """The oldest unsent records, in insertion order: about ``limit`` of them, never
        part of an entry's."""
        ...

    async def mark_sent(self, entries: Sequence[str]) -> None:
        """Mark these entries (every record in them) as published."""
        ...

    async def purge_sent(self, now: datetime) -> int:
        """Delete entries published long enough ago; how many."""
        ...


class Publisher(Protocol):
    """Something that puts a record on a topic and returns once the broker acknowledged."""

    async def publish(self, record: OutboxRecord) -> None:
        """Publish and wait for the acknowledgement."""
        ...


class RelayLease(Protocol):
    """Which replica's relay publishes (port): one at a time, so records go out once."""

    async def hold(self) -> bool:
        """Acquire or renew the lease; True while this relay may publish."""
        ...

    async def release(self) -> None:
        """Give the lease up (clean stop), so another replica takes over at once."""
        ...


_last_seq = 0


def _next_seq() -> int:
    """Wall-clock nanoseconds (order across restarts), strictly increasing in-process."""
    global _last_seq
    _last_seq = max(time.time_ns(), _last_seq + 1)
    return _last_seq


def _records(d: Doc) -> list[OutboxRecord]:
    """The records of one outbox document, in order."""
    return [
        OutboxRecord(
            id=r["id"],
            topic=r["topic"],
            key=bytes(r["key"]),
            value=bytes(r["value"]),
            headers=[(k, bytes(v)) for k, v in r["headers"]],
            type=r["type"],
            entry=d["_id"],
        )
        for r in d["records"]
    ]


class MongoOutbox:
    """The outbox collection of one service's database (real ``OutboxStore``).

    A committed batch's events are one document (``records`` in order): one insert with
    the batch's other writes and one mark once they are all published, however many
    events the batch emitted — on SecantusDB each document written costs more than the
    bytes in it. Published documents are deleted ``keep_sent`` after their mark.
    """

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        topic_prefix: str = "",
        *,
        keep_sent: timedelta = timedelta(hours=1),
    ) -> None:
        self.col = db[OUTBOX]
        self.topic_prefix = topic_prefix
        self.keep_sent = keep_sent
        # the relay's hand-off: records whose transaction committed (``listen``)
        self._committed: Callable[[Sequence[OutboxRecord]], None] | None = None

    def listen(self, committed: Callable[[Sequence[OutboxRecord]], None]) -> None:
        """After each commit of this process, hand its records to ``committed`` (the
        relay publishes them without reading them back)."""
        self._committed = committed

    @property
    def collection(self) -> str:
        """The outbox collection's name (the unit of work inserts into it)."""
        return OUTBOX

    def documents(self, events: Sequence[Emit]) -> list[Doc]:
        """The outbox document of a batch's ``events`` (written by the unit of work with
        the batch's other writes)."""
        if not events:
            return []
        records: list[Doc] = []
        for e in events:
            key, value, headers = encode_record(e.envelope)
            records.append(
                {
                    "id": e.envelope.id,
                    "topic": self.topic_prefix + e.topic,
                    "key": key,
                    "value": value,
                    "headers": [[k, v] for k, v in headers],
                    "type": e.envelope.type,
                }
            )
        return [
            {
                "_id": uuid.uuid4().hex,
                "seq": _next_seq(),
                "sent": False,
                "created_at": datetime.now(UTC),
                "keys": sorted({r["key"] for r in records}),
                "records": records,
            }
        ]

    def committed(self, docs: Sequence[Doc]) -> None:
        """The transaction of these documents committed: hand them to the relay."""
        if self._committed is not None:
            self._committed([r for d in docs for r in _records(d)])

    async def pending(self, limit: int) -> list[OutboxRecord]:
        out: list[OutboxRecord] = []
        async for d in self.col.find({"sent": False}).sort("seq", 1).limit(limit):
            out += _records(d)
            if len(out) >= limit:
                break
        return out

    async def mark_sent(self, entries: Sequence[str]) -> None:
        # one update per document by _id, in one command: the work grows with the batch,
        # not the collection (SecantusDB answers an update_many on ``_id $in`` with a scan)
        if entries:
            now = datetime.now(UTC)
            await self.col.bulk_write(
                [UpdateOne({"_id": i}, {"$set": {"sent": True, "sent_at": now}}) for i in entries],
                ordered=False,
            )

    async def purge_sent(self, now: datetime) -> int:
        """Delete documents published more than ``keep_sent`` ago (nothing reads them;
        bounded storage). An index on ``sent_at`` serves it."""
        res = await self.col.delete_many({"sent_at": {"$lt": now - self.keep_sent}})
        return res.deleted_count

    async def holds_unsent(self, key: bytes) -> bool:
        """Whether an unpublished record of this key (a request) is still waiting."""
        return await self.col.find_one({"sent": False, "keys": key}, {"_id": 1}) is not None

    async def count_pending(self) -> int:
        """How many records wait (for metrics and tests)."""
        total = 0
        async for d in self.col.find({"sent": False}, {"records.id": 1}):
            total += len(d.get("records", []))
        return total


class MongoRelayLease:
    """A lease document in the service's database (real ``RelayLease``).

    Renewed only when half of it has run out, so holding it costs a write every
    ``ttl / 2`` seconds, not one per pass. A replica that dies loses it after ``ttl``.
    """

    def __init__(self, db: AsyncDatabase[Doc], owner: str, ttl: float = 4.0) -> None:
        self.col = db[RELAY_LEASE]
        self.owner = owner
        self.ttl = ttl
        self._until = 0.0

    async def hold(self) -> bool:
        now = time.monotonic()
        if self._until - now > self.ttl / 2:
            return True
        wall = datetime.now(UTC)
        try:
            await self.col.find_one_and_update(
                {
                    "_id": "relay",
                    "$or": [{"owner": self.owner}, {"until": {"$lt": wall}}],
                },
                {"$set": {"owner": self.owner, "until": wall + timedelta(seconds=self.ttl)}},
                upsert=True,
            )
        except DuplicateKeyError:  # held by another replica and not expired
            self._until = 0.0
            return False
        self._until = now + self.ttl
        return True

    async def release(self) -> None:
        self._until = 0.0
        await self.col.update_one(
            {"_id": "relay", "owner": self.owner}, {"$set": {"until": datetime.now(UTC)}}
        )


class OutboxRelay:
    """Publishes pending outbox records; woken by ``nudge()``/``handoff()`` after a commit,
    or by polling."""

    def __init__(
        self,
        store: OutboxStore,
        publisher: Publisher,
        *,
        metrics: Metrics | None = None,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        lease: RelayLease | None = None,
        linger: float = 0.02,
        idle_poll_max: float = 1.0,
        mark_interval: float = 0.25,
        purge_interval: float = 60.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.lease = lease
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        # after a nudge that follows a publishing pass closely (under load), wait this long
        # so the commits of concurrent callers share one pass (one read and one mark for
        # all of them instead of per commit); an isolated nudge is served at once
        self.linger = linger
        # with nothing to publish, polling slows down to this (a nudge still wakes at once;
        # polling only finds records another replica's commits left for this lease holder);
        # also how often a relay fed by hand-offs reads the collection anyway
        self.idle_poll_max = max(idle_poll_max, poll_interval)
        # published records are marked sent together, at most this long after publishing
        self.mark_interval = mark_interval
        self._wake = asyncio.Event()
        self._stopping = False
        # Hand-offs: records this process committed, not yet published. Used instead of a
        # read while ``_clean``: the last read found the collection holding nothing else.
        self._fresh: list[OutboxRecord] = []
        self._clean = False
        self._reading = False
        self._read_at = -1e9
        self._unmarked: list[str] = []  # published, mark not yet written
        self.purge_interval = purge_interval  # published entries deleted this often
        self._purge_at = 0.0
        self._unmarked_at = 0.0

    def nudge(self) -> None:
        """Tell the relay there is something new to publish."""
        self._wake.set()

    def handoff(self, records: Sequence[OutboxRecord]) -> None:
        """Records whose transaction just committed (``MongoOutbox.listen``)."""
        if self._clean or self._reading:
            self._fresh.extend(records)
            if len(self._fresh) > 10 * self.batch_size:  # not keeping up: the store has them
                self._forget()
        self._wake.set()

    def _forget(self) -> None:
        self._fresh.clear()
        self._clean = False

    async def _read(self) -> list[OutboxRecord]:
        await self.flush_marks()  # else the read returns what was published already
        self._fresh.clear()  # committed before the read: the read returns them
        self._reading = True
        try:
            records = await self.store.pending(self.batch_size)
        except BaseException:
            self._forget()
            raise
        finally:
            self._reading = False
        self._read_at = time.monotonic()
        self._clean = len(records) < self.batch_size
        if self._fresh:  # handed off during the read: keep those it did not return
            seen = {r.id for r in records}
            self._fresh = [r for r in self._fresh if r.id not in seen]
        return records

    async def relay_once(self, *, read: bool = True, mark: bool = True) -> int:
        """Publish one batch; returns how many records were published. ``read=False``
        takes the hand-offs instead of reading, while nothing else can be pending;
        ``mark=False`` leaves the marks to ``flush_marks``."""
        if read or not self._clean:
            records = await self._read()
        else:
            records = _whole_entries(self._fresh, self.batch_size)
            del self._fresh[: len(records)]
        if not records:
            return 0
        results = await asyncio.gather(
            *(self.publisher.publish(r) for r in records), return_exceptions=True
        )
        done = [r for r, res in zip(records, results, strict=True) if res is None]
        failed = [res for res in results if isinstance(res, BaseException)]
        if failed:
            self._forget()  # the failed ones wait in the store
        # an entry is marked once every record of it went out (the others of a partly
        # failed entry go out again with it: consumers skip them by event id)
        lost = {r.entry_id for r, res in zip(records, results, strict=True) if res is not None}
        entries = list(dict.fromkeys(r.entry_id for r in done if r.entry_id not in lost))
        if entries and not self._unmarked:
            self._unmarked_at = time.monotonic()
        self._unmarked.extend(entries)
        if mark or len(self._unmarked) >= self.batch_size:
            await self.flush_marks()
        if self.metrics:
            for r in done:
                self.metrics.events_published.labels(r.topic, r.type).inc()
        if failed:
            log.warning(
                "outbox publish failed; will retry",
                extra={"failed": len(failed), "error": repr(failed[0])},
            )
            raise failed[0] if isinstance(failed[0], Exception) else RuntimeError(failed[0])
        return len(done)

    async def flush_marks(self) -> None:
        """Write the marks of the records published so far."""
        if self._unmarked:
            ids = list(self._unmarked)
            await self.store.mark_sent(ids)
            del self._unmarked[: len(ids)]

    def _marks_due_in(self) -> float | None:
        if not self._unmarked:
            return None
        return max(0.0, self._unmarked_at + self.mark_interval - time.monotonic())

    async def run(self) -> None:
        """Relay until ``stop()``; errors back off and retry, nothing is dropped."""
        backoff = self.poll_interval
        idle = self.poll_interval
        published_at = -1e9  # when the last pass that published anything ended
        while not self._stopping:
            # cleared before the pass, so a nudge or stop during the pass is not lost
            self._wake.clear()
            try:
                if self.lease is not None and not await self.lease.hold():
                    self._forget()  # another replica publishes; poll to take over if it dies
                    await self.flush_marks()
                    n = 0
                    idle = self.poll_interval
                else:
                    due = time.monotonic() - self._read_at >= self.idle_poll_max
                    n = await self.relay_once(read=due, mark=False)
                    if self._marks_due_in() == 0.0:
                        await self.flush_marks()
                    idle = self.poll_interval if n else min(idle * 2, self.idle_poll_max)
                    if n:
                        published_at = time.monotonic()
                    if time.monotonic() >= self._purge_at:  # the lease holder keeps it small
                        self._purge_at = time.monotonic() + self.purge_interval
                        await self.store.purge_sent(datetime.now(UTC))
                backoff = idle
            except Exception as exc:
                log.warning("outbox relay pass failed", extra={"error": repr(exc)})
                n = 0
                backoff = min(backoff * 2, 5.0)
                idle = self.poll_interval
            if n >= self.batch_size or self._stopping:
                continue
            marks = self._marks_due_in()
            wait = backoff if marks is None else min(backoff, marks)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                continue
            busy = time.monotonic() - published_at < 5 * self.linger
            if self.linger > 0 and busy and not self._stopping:
                await asyncio.sleep(self.linger)
        # drain what is left so a clean stop leaves nothing behind, then hand over
        try:
            if self.lease is None or await self.lease.hold():
                while await self.relay_once():
                    pass
            await self.flush_marks()
            if self.lease is not None:
                await self.lease.release()
        except Exception as exc:
            log.warning("outbox drain at stop failed", extra={"error": repr(exc)})

    def stop(self) -> None:
        """Ask ``run()`` to drain and return."""
        self._stopping = True
        self._wake.set()


def _whole_entries(records: Sequence[OutboxRecord], size: int) -> list[OutboxRecord]:
    """At least ``size`` of ``records`` (all, when fewer), ending where an entry ends:
    an entry is published in one pass, so it can be marked."""
    if len(records) <= size:
        return list(records)
    end = size
    while end < len(records) and records[end].entry_id == records[end - 1].entry_id:
        end += 1
    return list(records[:end])


class KafkaPublisher:
    """Publishes outbox records with a Kafka producer (real ``Publisher``)."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    async def publish(self, record: OutboxRecord) -> None:
        fut = await self.producer.send(
            record.topic, value=record.value, key=record.key, headers=record.headers
        )
        await fut
