"""Consumers: each poll is one unit of work; retry with backoff; park poison on ``<topic>.dlq``.

Offsets are committed only after a batch committed (or its bad records were parked). A
record's processed-event mark commits with its effects, so a redelivery after a crash
changes nothing. Infrastructure errors (database or broker unreachable, conflicts that
outlast the unit of work's own retries) are retried without limit and never dead-letter a
good record; a record the domain refuses is parked at once, and a record that fails for
any other reason is retried ``max_attempts`` times and then parked, with ``x-error``,
``x-attempts`` and ``x-consumer`` headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)
from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout, PyMongoError

from tongxin.contracts.envelope import Envelope, InvalidEnvelope, decode_record
from tongxin.contracts.topics import dlq_topic
from tongxin.runtime.kafka import PLAINTEXT, KafkaSecurity, Producer, make_consumer
from tongxin.runtime.metrics import Metrics
from tongxin.runtime.mongo import PROCESSED
from tongxin.runtime.uow import Decision, Refused, Retry, UnitOfWork

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,  # includes ServerSelectionTimeoutError
    AutoReconnect,
    NetworkTimeout,
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure, not of the record: retry until it is back."""
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError)):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    if isinstance(exc, PyMongoError) and exc.has_error_label("TransientTransactionError"):
        # write conflicts that outlasted the transaction's own retries: contention (e.g. a
        # killed process's open transaction, until the server reaps it), not a bad record
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff; jitter picks between half and all of the delay."""

    max_attempts: int = 5
    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: bool = True

    def delay(self, attempt: int, rnd: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        try:
            base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        except OverflowError:
            base = self.maximum
        return base * (0.5 + rnd() / 2) if self.jitter else base

    def exhausted(self, attempt: int) -> bool:
        """True when ``attempt`` failed attempts mean the record must be parked."""
        return attempt >= self.max_attempts


class _Stopping(Exception):
    """Raised inside a retry wait when the runner is asked to stop."""


def dlq_headers(
    original: Sequence[tuple[str, bytes]], error: str, attempts: int, consumer: str
) -> list[tuple[str, bytes]]:
    """The original headers plus the dead-letter ones (previous x-* replaced)."""
    keep = [(k, v) for k, v in original if k not in ("x-error", "x-attempts", "x-consumer")]
    return [
        *keep,
        ("x-error", error[:2000].encode()),
        ("x-attempts", str(attempts).encode()),
        ("x-consumer", consumer.encode()),
    ]


# — batch-native consumption (the unit of work) —

BatchHandle = Callable[[Sequence[Envelope]], Awaitable[Decision[None]]]


class BatchConsumer:
    """Runs one consumer group: each poll is one batch, decided and committed as one unit of
    work (``tongxin.runtime.uow``) together with the records' processed-event marks.

    Per poll (bounded by ``max_records`` and the fetch byte limits): records that are not
    well-formed CloudEvents are parked at once; types without a handler are skipped; the
    rest go to ``handle`` in partition and offset order (so per key, in order), minus those
    whose marks show them handled before. ``handle`` returns effects and per record its
    outcome: a :class:`~tongxin.runtime.uow.Refused` record is parked with its reason (not
    marked, so a replay after the cause is fixed applies it). A batch that fails for a
    reason of its own is split until the failing record is alone, which is retried with
    backoff (``policy``) and then parked — before any later record of the batch commits,
    so per-key order holds. The database or broker being away is waited out, never parked.
    Offsets are committed after the batch committed; a crash in between redelivers the
    records, and their marks make them no-ops.
    """

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        handle: BatchHandle,
        types: frozenset[str],
        uow: UnitOfWork,
        producer: Producer,
        metrics: Metrics,
        policy: RetryPolicy | None = None,
        group_id: str | None = None,
        max_records: int = 500,
        max_partition_bytes: int = 1 << 20,
        security: KafkaSecurity = PLAINTEXT,
        stop_grace: float = 10.0,
        instance: str | None = None,
        mark: bool = True,
    ) -> None:
        self.name = name
        # False: the use case recognises a repeat itself (its effects carry the event id
        # under a unique key, or it looks the event up in what it loads): no marks to
        # write or read, which on SecantusDB are a quarter of the documents written
        self.mark = mark
        self.topics = list(topics)
        self.handle = handle
        self.types = types
        self.uow = uow
        self.producer = producer
        self.metrics = metrics
        self.policy = policy or RetryPolicy()
        self.max_records = max_records
        self.stop_grace = stop_grace
        self.marks = uow.client[uow.db_name][PROCESSED]
        # no topics here: subscribed after start, which then does not wait for the group's
        # assignment (the process is up while a rebalance runs)
        self.consumer = make_consumer(
            bootstrap=bootstrap,
            security=security,
            group_id=group_id or name,
            group_instance_id=f"{group_id or name}@{instance}" if instance else None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10000,
            heartbeat_interval_ms=3000,
            max_poll_interval_ms=300000,
            max_partition_fetch_bytes=max_partition_bytes,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._work: asyncio.Task[None] | None = None
        self._parked: set[str] = set()  # event ids of the batch in hand parked by _settle

    async def start(self) -> None:
        """Connect, subscribe, and consume in the background (the group's assignment
        arrives there)."""
        await self.consumer.start()
        self.consumer.subscribe(self.topics)
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.name}")

    async def stop(self) -> None:
        """Let the batch in hand finish (for at most ``stop_grace`` s), commit its offsets,
        leave the group. A batch cut off rolls back and is delivered again."""
        self._stop.set()
        if self._task:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.stop_grace)
            except TimeoutError:
                log.warning(
                    "records still in hand at stop are given up; they will be delivered again",
                    extra={"consumer": self.name, "grace_s": self.stop_grace},
                )
                if self._work is not None:
                    self._work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self.consumer.stop()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                polled = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
            except KafkaError as exc:
                log.warning("poll failed", extra={"consumer": self.name, "error": repr(exc)})
                with contextlib.suppress(_Stopping):
                    await self._wait(1.0)
                continue
            records = [r for recs in polled.values() for r in recs]
            if not records:
                continue
            self._work = asyncio.create_task(self._batch(records))
            try:
                await self._work
            except (_Stopping, asyncio.CancelledError):
                break  # not committed: delivered again
            except Exception:
                # never let the loop die while the member keeps its partitions: rewind to
                # the batch's start so nothing is skipped (marks make repeats no-ops)
                log.exception("consumer batch failed", extra={"consumer": self.name})
                self._rewind(polled)
                with contextlib.suppress(_Stopping):
                    await self._wait(1.0)
                continue
            finally:
                self._work = None
            offsets = {tp: recs[-1].offset + 1 for tp, recs in polled.items() if recs}
            await self._commit(offsets)
            self._observe_lag(offsets)
        log.info("consumer stopped", extra={"consumer": self.name})

    def _rewind(self, polled: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        assigned = self.consumer.assignment()
        for tp, recs in polled.items():
            if tp in assigned and recs:
                with contextlib.suppress(IllegalStateError, AssertionError):
                    self.consumer.seek(tp, recs[0].offset)

    async def _batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Handle one poll: park the malformed, skip the unknown, decide and commit the rest."""
        started = time.perf_counter()
        envs: list[Envelope] = []
        raw: dict[str, ConsumerRecord[bytes, bytes]] = {}
        for rec in records:
            try:
                env = decode_record(rec.key, rec.value, rec.headers)
            except InvalidEnvelope as exc:
                await self._park(rec, f"InvalidEnvelope: {exc}", 1, "invalid")
                continue
            if env.type not in self.types:
                self.metrics.events_consumed.labels(self.name, rec.topic, "other", "ignored").inc()
                continue
            if mark_key(env) in raw:  # the same event twice in one poll: the second is a repeat
                continue
            raw[mark_key(env)] = rec
            envs.append(env)
        if not envs:
            return
        self._parked.clear()
        self.metrics.consumer_batch.labels(self.name).observe(len(envs))
        outcomes = await self._until_done(envs, raw)
        elapsed = time.perf_counter() - started
        now = datetime.now(UTC)
        for env, outcome in zip(envs, outcomes, strict=True):
            rec = raw[mark_key(env)]
            if isinstance(outcome, Exception):
                if mark_key(env) not in self._parked:  # refused by the domain: parked now
                    await self._park(rec, f"{type(outcome).__name__}: {outcome}", 1, env.type)
                continue
            self.metrics.handler_seconds.labels(self.name, env.type).observe(elapsed)
            age = (now - env.time).total_seconds()
            self.metrics.event_age.labels(self.name, env.type).observe(max(0.0, age))
            label = "handled" if outcome != _REPEAT else "duplicate"
            self.metrics.events_consumed.labels(self.name, rec.topic, env.type, label).inc()

    async def _until_done(
        self, envs: Sequence[Envelope], raw: Mapping[str, ConsumerRecord[bytes, bytes]]
    ) -> list[object]:
        """Run the batch through the unit of work until it commits; the database or broker
        being away (or conflicts outlasting the unit of work's retries) is waited out."""

        async def decide(batch: Sequence[Envelope]) -> Decision[object]:
            return await self._decide(batch)

        async def settle(env: Envelope, exc: Exception) -> object:
            return await self._settle(env, exc, raw[mark_key(env)], decide)

        while True:
            try:
                return await self.uow.run(envs, decide, settle=settle)
            except Exception as exc:
                if not is_transient(exc) and not isinstance(exc, Retry):
                    raise
                log.warning(
                    "infrastructure error; retrying",
                    extra={"consumer": self.name, "records": len(envs), "error": repr(exc)},
                )
                await self._wait(self.policy.maximum)

    async def _decide(self, batch: Sequence[Envelope]) -> Decision[object]:
        """Skip what was handled before, let the service decide the rest, add the marks."""
        # looked up by _id (the consumer and the event's identity): a query every server
        # answers from the primary key, however many marks pile up
        ids = [self._mark_id(e) for e in batch]
        seen: set[str] = set()
        if self.mark:
            seen = {d["_id"] async for d in self.marks.find({"_id": {"$in": ids}}, {"_id": 1})}
        fresh = [i for i, mid in enumerate(ids) if mid not in seen]
        decision: Decision[object] = Decision()
        if fresh:
            inner = await self.handle([batch[i] for i in fresh])
            decision.effects = inner.effects
            for j, i in enumerate(fresh):
                outcome = inner.outcomes.get(j)
                if isinstance(outcome, Exception):
                    decision.outcomes[i] = outcome
                    continue
                decision.outcomes[i] = None
                if not self.mark:
                    continue
                decision.effects.insert(
                    PROCESSED,
                    {
                        "_id": ids[i],
                        "consumer": self.name,
                        "event_id": mark_key(batch[i]),
                        "at": datetime.now(UTC),
                    },
                )
        for i in range(len(batch)):
            if i not in decision.outcomes:
                decision.outcomes[i] = _REPEAT
        return decision

    def _mark_id(self, env: Envelope) -> str:
        """The ``_id`` of this consumer's processed-event mark of ``env``."""
        return f"{self.name}|{mark_key(env)}"

    async def _settle(
        self,
        env: Envelope,
        exc: Exception,
        rec: ConsumerRecord[bytes, bytes],
        decide: Callable[[Sequence[Envelope]], Awaitable[Decision[object]]],
    ) -> Exception | object:
        """A record that failed alone: refused records are parked at once; others are
        retried with backoff, then parked. Returns its final outcome."""
        attempt = 1
        while True:
            if isinstance(exc, Refused):
                await self._park(rec, f"{type(exc).__name__}: {exc}", attempt, env.type)
                self._parked.add(mark_key(env))
                return exc
            self.metrics.handler_retries.labels(self.name, env.type).inc()
            log.warning(
                "handler failed",
                extra={
                    "consumer": self.name,
                    "event_id": env.id,
                    "type": env.type,
                    "attempt": attempt,
                    "error": repr(exc),
                },
            )
            if self.policy.exhausted(attempt):
                await self._park(rec, f"{type(exc).__name__}: {exc}", attempt, env.type)
                self._parked.add(mark_key(env))
                return exc
            await self._wait(self.policy.delay(attempt))
            attempt += 1
            outcome = (await self.uow.run([env], decide))[0]
            if not isinstance(outcome, Exception):
                return outcome
            exc = outcome

    async def _park(
        self, rec: ConsumerRecord[bytes, bytes], error: str, attempts: int, ce_type: str
    ) -> None:
        headers = dlq_headers(list(rec.headers), error, attempts, self.name)
        while True:
            try:
                await self.producer.send_and_wait(
                    dlq_topic(rec.topic), value=rec.value, key=rec.key, headers=headers
                )
                break
            except KafkaError as exc:
                log.warning("dead-letter publish failed", extra={"error": repr(exc)})
                await self._wait(1.0)
        self.metrics.dlq.labels(self.name, rec.topic).inc()
        self.metrics.events_consumed.labels(self.name, rec.topic, ce_type, "dead_lettered").inc()
        log.error(
            "record parked on dead-letter topic",
            extra={
                "consumer": self.name,
                "topic": rec.topic,
                "partition": rec.partition,
                "offset": rec.offset,
                "attempts": attempts,
                "error": error[:300],
            },
        )

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise _Stopping

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # partitions moved to another member; it will redeliver and marks dedupe
            log.warning("commit failed", extra={"consumer": self.name, "error": repr(exc)})

    def _observe_lag(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self.consumer.assignment()
        for tp, position in offsets.items():
            if tp not in assigned:
                continue
            try:
                end = self.consumer.highwater(tp)
            except (IllegalStateError, AssertionError):
                continue
            if end is not None:
                self.metrics.consumer_lag.labels(self.name, tp.topic, str(tp.partition)).set(
                    max(0, end - position)
                )


_REPEAT = "repeat"  # outcome of a record whose mark shows it handled before


def mark_key(env: Envelope) -> str:
    """How a consumer remembers it handled an event: its CloudEvents identity. The id alone
    for the platform's own events (UUIDs); (source, id) as JSON for other platforms', whose
    ids are unique only per source."""
    if env.source.startswith("/tongxin/"):
        return env.id
    return json.dumps([env.source, env.id], ensure_ascii=False)
