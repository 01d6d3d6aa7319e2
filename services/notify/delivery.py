"""Sending planned deliveries: claim-and-attempt, retries, the outcome and its event.

At most once per (event, recipient, channel): one atomic write takes a delivery and marks
the attempt (``sending``), under the channel's concurrency limit, right before it goes out;
a crash from there until the outcome is recorded leaves it ``sending`` and it is never sent
again. Every other open state is known undelivered and is resumed after a crash:

- ``pending`` (planned, not yet attempted): the event's redelivery sends it, and the
  resume sweep takes it once it has waited longer than the lease;
- ``retrying`` (between attempts): its process holds it until its next attempt plus the
  lease; after that, any replica's resume sweep takes it over.

Taking a delivery is a conditional write on its ``_id`` and status, so whichever process
wins sends it and every other one skips it: exactly one attempt at a time across replicas.
The outcome and ``notification.sent`` / ``notification.failed`` are written in one
transaction with the outbox.

Console deliveries (the service log) are recorded ``sent`` with their
``notification.sent`` in the planning transaction itself and written to the log after it
commits: no extra writes, and a redelivered event never logs them twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.client_session import AsyncClientSession

from services.notify.channels import ChannelHealth, ChannelSender, DeliveryError, Outgoing
from services.notify.config import NotifySettings
from services.notify.domain.templates import Message
from services.notify.metrics import NotifyMetrics
from services.notify.store import PENDING, RETRYING, NotifyStore
from tongxin.contracts.enums import NotifyChannel
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import NotificationFailed, NotificationSent
from tongxin.contracts.topics import NOTIFICATIONS
from tongxin.runtime.consumer import RetryPolicy, is_transient
from tongxin.runtime.mongo import Doc, in_transaction
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

SENT, FAILED, SKIPPED = "sent", "failed", "skipped"


class Stopping(Exception):
    """The process is stopping: the delivery was left open (``pending`` or ``retrying``,
    released) for another replica or the next start to resume."""


def channel_of(did: str) -> NotifyChannel:
    """The channel of a delivery, from its id (``<event>|<recipient>|<channel>``)."""
    return NotifyChannel(did.rsplit("|", 1)[-1])


def outgoing(doc: Doc) -> Outgoing:
    """What a sender needs from a delivery document."""
    return Outgoing(
        delivery_id=doc["_id"],
        notification_id=doc["notification_id"],
        recipient=doc["recipient"],
        recipient_name=str(doc.get("recipient_name") or doc["recipient"]),
        addresses=doc.get("address") or {},
        message=Message.from_doc(doc["message"]),
        markdown=bool(doc.get("markdown")),
        meta={
            "event_type": doc["event_type"],
            "event_id": doc["event_id"],
            "request_id": doc["request_id"],
            "critical": bool(doc.get("critical")),
        },
    )


class Dispatcher:
    """Sends deliveries over their channels, bounded per channel."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: NotifyStore,
        senders: Mapping[NotifyChannel, ChannelSender],
        settings: NotifySettings,
        metrics: NotifyMetrics,
        health: Mapping[NotifyChannel, ChannelHealth],
    ) -> None:
        self.rt = rt
        self.store = store
        self.senders = dict(senders)
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.owner = f"notify-{uuid.uuid4().hex[:8]}"
        self.policy = RetryPolicy(
            max_attempts=settings.notify_attempts,
            initial=settings.notify_backoff_initial_s,
            maximum=settings.notify_backoff_max_s,
        )
        self.lease = timedelta(seconds=settings.notify_delivery_lease_s)
        self._limits = {c: asyncio.Semaphore(settings.concurrency_for(c)) for c in NotifyChannel}
        self._active: set[str] = set()  # deliveries this process is working on
        self._resuming: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._claimed = 0  # deliveries claimed (sending) whose outcome is not recorded yet
        self._settled = asyncio.Event()
        self._settled.set()

    # — console: recorded in the planning transaction —

    @property
    def console_inline(self) -> bool:
        """Whether console deliveries are recorded sent while planning."""
        return NotifyChannel.CONSOLE in self.senders

    async def record_console(self, session: AsyncClientSession, docs: Sequence[Doc]) -> None:
        """Mark the event's ready console deliveries sent, with their ``notification.sent``,
        inside the planning transaction (``docs`` are about to be inserted)."""
        if not self.console_inline:
            return
        now = datetime.now(UTC)
        for doc in docs:
            if doc["channel"] != NotifyChannel.CONSOLE.value or doc["status"] != PENDING:
                continue
            doc.update(status=SENT, attempts=1, owner=self.owner, last_attempt_at=now, sent_at=now)
            env = self._sent_event(doc, NotifyChannel.CONSOLE, now)
            await self.rt.outbox.add(session, NOTIFICATIONS.name, env)

    async def console_committed(self, docs: Sequence[Doc]) -> None:
        """After the planning transaction committed: write the console messages to the log."""
        sender = self.senders.get(NotifyChannel.CONSOLE)
        mine = [d for d in docs if d["channel"] == NotifyChannel.CONSOLE.value]
        mine = [d for d in mine if d["status"] == SENT]
        if sender is None or not mine:
            return
        health = self.health[NotifyChannel.CONSOLE]
        for doc in mine:
            started = time.perf_counter()
            await sender.send(outgoing(doc))
            health.ok()
            self.metrics.attempt_seconds.labels("console", "ok").observe(
                time.perf_counter() - started
            )
            self.metrics.notifications.labels("console", SENT).inc()
            self.metrics.delivery_seconds.labels("console").observe(0.0)
        self.rt.relay.nudge()

    # — network channels —

    async def dispatch_planned(self, docs: Sequence[Doc]) -> list[Doc]:
        """A freshly planned event: send its ready deliveries; returns those that failed."""
        ready = [d for d in docs if d["status"] == PENDING]
        return await self._dispatch_all(
            [(d["_id"], PENDING) for d in ready], known={d["_id"]: d for d in ready}
        )

    async def dispatch_event(self, event_id: str, *, reopen_failed: bool = False) -> list[Doc]:
        """A redelivered event: resume its open deliveries; returns those that failed."""
        docs = await self.store.open_deliveries(event_id, self.lease, reopen_failed=reopen_failed)
        return await self._dispatch_all([(d["_id"], d["status"]) for d in docs])

    async def _dispatch_all(
        self, todo: Sequence[tuple[str, str]], known: Mapping[str, Doc] | None = None
    ) -> list[Doc]:
        async def one(did: str, status: str) -> tuple[str, Doc | None]:
            try:
                return await self.dispatch(did, status, (known or {}).get(did))
            except Stopping:
                return SKIPPED, None  # left open; resumed by another replica or a restart

        results = await asyncio.gather(*(one(did, status) for did, status in todo))
        return [doc for outcome, doc in results if outcome == FAILED and doc is not None]

    async def dispatch(
        self, did: str, status: str, known: Doc | None = None
    ) -> tuple[str, Doc | None]:
        """Send one delivery if it is still in ``status`` (a ``retrying`` one only once its
        lease ran out); (sent | failed | skipped, its document). Raises :class:`Stopping`
        when the process stops before it could be sent. ``known``: the document as this
        process just planned it (saves reading it back when it is taken)."""
        if did in self._active:
            return SKIPPED, None  # this process is already on it
        self._active.add(did)
        try:
            return await self._send(did, status, known)
        finally:
            self._active.discard(did)

    async def _send(
        self, did: str, status: str, known: Doc | None = None
    ) -> tuple[str, Doc | None]:
        channel = channel_of(did)
        sender = self.senders.get(channel)
        timeout = timedelta(seconds=self.settings.timeout_for(channel))
        held_by: str | None = None  # a retry of ours: taken by owner, not by expired lease
        out: Outgoing | None = None
        run = 0  # attempts in this dispatch: what the retry policy counts
        while True:
            run += 1
            async with self._limits[channel]:
                if self._stopping.is_set():
                    if held_by is not None:
                        await self.store.release(did, self.owner)
                    raise Stopping(did)
                until = datetime.now(UTC) + timeout + self.lease
                try:
                    doc = await self.store.claim_attempt(
                        did, status, self.owner, until, held_by=held_by, known=known
                    )
                except Exception as exc:
                    if is_transient(exc):
                        # the take may have been applied without the answer reaching us
                        # (the database went away): nothing was sent, so hand it back,
                        # due at once, when the database answers again
                        now = datetime.now(UTC)
                        await self._retrying(did, f"take interrupted: {exc!r}", now, now)
                    raise
                if doc is None:
                    return SKIPPED, None  # sent, failed, uncertain, or another process has it
                self._hold()
                try:
                    out = out or outgoing(doc)
                    try:
                        provider_id = await self._attempt(channel, sender, out)
                        error: DeliveryError | None = None
                    except DeliveryError as exc:
                        error = exc
                except BaseException:
                    self._unhold()
                    raise
            try:
                attempt = int(doc["attempts"])  # over the delivery's life (DLQ replays too)
                if error is None:
                    await self._sent(doc, channel, provider_id, attempt)
                    return SENT, doc
                if not error.retryable or self.policy.exhausted(run):
                    await self._failed(doc, channel, str(error), attempt)
                    return FAILED, {**doc, "last_error": str(error), "attempts": attempt}
                delay = self.policy.delay(run)
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                await self._retrying(did, str(error), retry_at)
            finally:
                self._unhold()
            status, held_by, known = RETRYING, self.owner, doc
            self.metrics.retries.labels(channel.value).inc()
            log.info(
                "delivery attempt failed; retrying",
                extra={"delivery": did, "attempt": attempt, "error": str(error)},
            )
            if await self._stopped_within(delay):
                await self.store.release(did, self.owner)
                raise Stopping(did)

    async def _retrying(
        self, did: str, error: str, retry_at: datetime, lease_until: datetime | None = None
    ) -> None:
        """Record that nothing was delivered, riding out a short database outage: left
        ``sending``, a delivery known undelivered would count as uncertain and stay unsent."""
        for wait in (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 0.0):
            try:
                await self.store.mark_retrying(
                    did, self.owner, error, retry_at, lease_until or retry_at + self.lease
                )
                return
            except Exception as exc:
                if not is_transient(exc) or not wait:
                    raise
                log.warning("recording a retry failed", extra={"delivery": did, "error": repr(exc)})
                await asyncio.sleep(wait)

    def _hold(self) -> None:
        self._claimed += 1
        self._settled.clear()

    def _unhold(self) -> None:
        self._claimed -= 1
        if self._claimed == 0:
            self._settled.set()

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait out a backoff; True when the process started stopping meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    # — the resume sweep —

    async def sweep(self, limit: int = 100) -> int:
        """Resume open deliveries nobody holds (their process died, or never got to them);
        returns how many this replica started on. Each is taken by one atomic write, so a
        delivery two replicas both see is still sent once."""
        docs = await self.store.resumable(datetime.now(UTC), limit)
        started = 0
        for d in docs:
            did = d["_id"]
            if did in self._active or self._stopping.is_set():
                continue
            self._active.add(did)  # before the task runs: the next pass skips it
            task = asyncio.create_task(self._resume(did, d["status"]), name=f"resume:{did}")
            self._resuming.add(task)
            task.add_done_callback(self._resuming.discard)
            started += 1
        return started

    async def _resume(self, did: str, status: str) -> None:
        try:
            outcome, doc = await self._send(did, status)
            if outcome == FAILED and doc is not None:
                log.warning(
                    "resumed delivery failed",
                    extra={"delivery": did, "error": doc.get("last_error")},
                )
            elif outcome == SENT:
                log.info("resumed delivery sent", extra={"delivery": did})
        except Stopping:
            pass
        except Exception as exc:  # database down: the delivery stays open for the next pass
            log.warning("resuming a delivery failed", extra={"delivery": did, "error": repr(exc)})
        finally:
            self._active.discard(did)

    async def run_sweeper(self) -> None:
        """Sweep every ``notify_sweep_interval_s`` until the process stops."""
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("delivery sweep failed", extra={"error": repr(exc)})
            await self._stopped_within(self.settings.notify_sweep_interval_s)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking deliveries; wait (bounded) for the attempts under way to be recorded,
        so they are not left uncertain, before the channel clients are closed."""
        self._stopping.set()
        if grace is None:
            grace = max(self.settings.timeout_for(c) for c in NotifyChannel) + 10.0
        try:
            await asyncio.wait_for(self._settled.wait(), timeout=grace)
        except TimeoutError:
            log.warning("stopping with deliveries in flight", extra={"in_flight": self._claimed})
        if self._resuming:
            await asyncio.wait(list(self._resuming), timeout=5.0)

    async def _attempt(
        self, channel: NotifyChannel, sender: ChannelSender | None, out: Outgoing
    ) -> str | None:
        """One attempt with the channel's timeout (the caller holds the channel's limit)."""
        health = self.health[channel]
        if sender is None:
            raise DeliveryError(f"channel {channel.value} is not configured", retryable=False)
        started = time.perf_counter()
        health.in_flight += 1
        self.metrics.in_flight.labels(channel.value).inc()
        try:
            result = await asyncio.wait_for(
                sender.send(out), timeout=self.settings.timeout_for(channel)
            )
        except DeliveryError as exc:
            health.failed(str(exc))
            self.metrics.attempt_seconds.labels(channel.value, "error").observe(
                time.perf_counter() - started
            )
            raise
        except TimeoutError as exc:
            health.failed("timed out")
            self.metrics.attempt_seconds.labels(channel.value, "error").observe(
                time.perf_counter() - started
            )
            raise DeliveryError(f"{channel.value} timed out", retryable=True) from exc
        except Exception as exc:  # a sender bug or an odd answer: a failed attempt
            health.failed(repr(exc))
            self.metrics.attempt_seconds.labels(channel.value, "error").observe(
                time.perf_counter() - started
            )
            raise DeliveryError(f"{channel.value}: {exc!r}", retryable=True) from exc
        finally:
            health.in_flight -= 1
            self.metrics.in_flight.labels(channel.value).dec()
        health.ok()
        self.metrics.attempt_seconds.labels(channel.value, "ok").observe(
            time.perf_counter() - started
        )
        return result

    def _sent_event(self, doc: Doc, channel: NotifyChannel, now: datetime) -> Envelope:
        event = NotificationSent(
            request_id=doc["request_id"],
            notification_id=doc["notification_id"],
            source_event_id=doc["event_id"],
            source_event_type=doc["event_type"],
            recipient=doc["recipient"],
            channel=channel,
            sent_at=now,
        )
        return Envelope.wrap(event, self.rt.source, event_id=_event_id(doc, "sent"))

    async def _sent(
        self, doc: Doc, channel: NotifyChannel, provider_id: str | None, attempts: int
    ) -> None:
        now = datetime.now(UTC)
        env = self._sent_event(doc, channel, now)

        async def txn(session: AsyncClientSession) -> None:
            await self.store.mark_sent(session, doc["_id"], provider_id)
            await self.rt.outbox.add(session, NOTIFICATIONS.name, env)

        # it went out: ride out a short database outage so it is recorded sent (with its
        # notification.sent) rather than left uncertain
        for wait in (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 0.0):
            try:
                await in_transaction(self.rt.mongo, txn)
                break
            except Exception as exc:
                if not is_transient(exc) or not wait:
                    raise
                log.warning("recording a delivery failed", extra={"delivery": doc["_id"]})
                await asyncio.sleep(wait)
        self.rt.relay.nudge()
        self.metrics.notifications.labels(channel.value, SENT).inc()
        ready_at = doc.get("not_before") or doc["created_at"]
        if ready_at.tzinfo is None:
            ready_at = ready_at.replace(tzinfo=UTC)
        self.metrics.delivery_seconds.labels(channel.value).observe(
            max(0.0, (now - ready_at).total_seconds())
        )
        log.info(
            "notification sent",
            extra={"delivery": doc["_id"], "channel": channel.value, "attempts": attempts},
        )

    async def _failed(self, doc: Doc, channel: NotifyChannel, error: str, attempts: int) -> None:
        event = NotificationFailed(
            request_id=doc["request_id"],
            notification_id=doc["notification_id"],
            source_event_id=doc["event_id"],
            source_event_type=doc["event_type"],
            recipient=doc["recipient"],
            channel=channel,
            error=error[:500],
            attempts=attempts,
            failed_at=datetime.now(UTC),
        )
        env = Envelope.wrap(event, self.rt.source, event_id=_event_id(doc, f"failed:{attempts}"))

        async def txn(session: AsyncClientSession) -> None:
            await self.store.mark_failed(session, doc["_id"], error)
            await self.rt.outbox.add(session, NOTIFICATIONS.name, env)

        await in_transaction(self.rt.mongo, txn)
        self.rt.relay.nudge()
        self.metrics.notifications.labels(channel.value, FAILED).inc()
        log.warning(
            "notification failed",
            extra={
                "delivery": doc["_id"],
                "channel": channel.value,
                "attempts": attempts,
                "error": error,
            },
        )


def _event_id(doc: Doc, what: str) -> str:
    """A stable id for the event about a delivery's outcome (a retried failure gets a new one)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tongxin:notify:{doc['_id']}:{what}"))


def channel_health(
    settings: NotifySettings, enabled: frozenset[NotifyChannel]
) -> dict[NotifyChannel, ChannelHealth]:
    """A fresh health record per channel."""
    return {
        c: ChannelHealth(c, c in enabled, settings.concurrency_for(c), settings.timeout_for(c))
        for c in NotifyChannel
    }
