"""Sending, part of notify's service layer: deliveries are claimed in chunks, attempted under
each channel's concurrency limit and timeout, and their outcomes recorded in batches.

At most once per (event, recipient, channel). Per channel, a lane takes the deliveries
waiting for it in chunks of at most the free slots of the channel (its concurrency): one
conditional ``update_many`` per chunk marks them ``sending`` (``attempts + 1``) and is
acknowledged before any of them goes out. A slot is free again only once the outcome of its
attempt is recorded, so at any moment at most ``concurrency`` deliveries of a channel are
``sending`` in this process — all a SIGKILL can leave uncertain (never sent again).

Outcomes are written in batches (one transaction per batch, whatever finished meanwhile):
``sent`` + ``notification.sent``, ``failed`` + ``notification.failed``, or ``retrying``
(nothing delivered; this process tries again after the backoff, any replica's sweep after
the lease). Every other open state is known undelivered and resumed after a crash.

A clean stop takes no new chunk, waits (bounded) for the attempts under way to be recorded,
and hands the deliveries between attempts back at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.notify.channels import ChannelHealth, ChannelSender, DeliveryError, Outgoing
from services.notify.channels.console import ConsoleSender
from services.notify.config import NotifySettings
from services.notify.domain.delivery import Delivery, Take, outcome_event_id
from services.notify.metrics import NotifyMetrics
from services.notify.store import NotifyStore
from tongxin.contracts.enums import NotifyChannel
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import NotificationFailed, NotificationSent
from tongxin.contracts.topics import NOTIFICATIONS
from tongxin.runtime.consumer import RetryPolicy, is_transient
from tongxin.runtime.uow import DuplicateWrite, Effects, UnitOfWork

log = logging.getLogger(__name__)

RIDE_OUT = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)  # waits while the database is briefly away


class Stopping(ConnectionError):
    """The process stops: the delivery was left open for another replica or the next start
    (a consumer waits this out like an outage, so the event is not marked handled)."""


@dataclass(frozen=True, slots=True)
class Ready:
    """A delivery to send now, and how to take it."""

    delivery: Delivery
    take: Take


class Result(StrEnum):
    """How a delivery's dispatch ended."""

    SENT = "sent"
    FAILED = "failed"  # after its last attempt, or refused
    SKIPPED = "skipped"  # not as expected when claimed: sent, failed, uncertain, or taken
    STOPPED = "stopped"  # the process stops first; left open


@dataclass(frozen=True, slots=True)
class Outcome:
    """A delivery's dispatch: how it ended, the delivery as it is now, the last error."""

    result: Result
    delivery: Delivery
    error: str | None = None


@dataclass(eq=False)
class _Job:
    delivery: Delivery
    take: Take
    done: asyncio.Future[Outcome]
    runs: int = 0  # attempts in this dispatch: what the retry policy counts


@dataclass(eq=False)
class _Finished:
    """An attempt that ended, waiting for its outcome to be recorded."""

    job: _Job
    lane: _Lane
    result: Result | None  # SENT, FAILED, or None: retried after ``delay``
    provider_id: str | None = None
    error: str | None = None
    delay: float = 0.0


def outgoing(d: Delivery) -> Outgoing:
    """What a sender needs from a delivery."""
    return Outgoing(
        delivery_id=d.id,
        notification_id=d.notification_id,
        recipient=d.recipient,
        recipient_name=d.recipient_name or d.recipient,
        addresses=d.address,
        message=d.message,
        markdown=d.markdown,
        meta={
            "event_type": d.event_type,
            "event_id": d.event_id,
            "request_id": d.request_id,
            "critical": d.critical,
        },
    )


@dataclass(eq=False)
class _Lane:
    """One channel: deliveries waiting for a claim, and its free slots."""

    dispatch: Dispatch
    channel: NotifyChannel
    free: int  # slots: the channel's concurrency less the deliveries claimed, not recorded
    queue: deque[_Job] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None

    def put(self, job: _Job) -> None:
        self.queue.append(job)
        self.kick()

    def freed(self, n: int = 1) -> None:
        self.free += n
        self.kick()

    def kick(self) -> None:
        self.wake.set()
        if self.queue and (self.worker is None or self.worker.done()):
            self.worker = asyncio.create_task(self._work(), name=f"notify:{self.channel.value}")

    async def _work(self) -> None:
        while self.queue:
            if self.dispatch.stopping:
                while self.queue:
                    job = self.queue.popleft()
                    self.dispatch.settle(job, Outcome(Result.STOPPED, job.delivery))
                return
            if self.free <= 0:
                self.wake.clear()
                await self.wake.wait()
                continue
            chunk = [self.queue.popleft() for _ in range(min(self.free, len(self.queue)))]
            self.free -= len(chunk)
            try:
                await self.dispatch.claim_and_attempt(self, chunk)
            except Exception as exc:  # a defect: nothing of the chunk is left waiting
                log.exception("claiming a chunk failed", extra={"channel": self.channel.value})
                self.freed(len(chunk))
                for job in chunk:
                    self.dispatch.fail(job, exc)


class Dispatch:
    """Sends deliveries over their channels; see the module docstring."""

    def __init__(
        self,
        uow: UnitOfWork,
        store: NotifyStore,
        senders: Mapping[NotifyChannel, ChannelSender],
        settings: NotifySettings,
        metrics: NotifyMetrics,
        health: Mapping[NotifyChannel, ChannelHealth],
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow = uow
        self.store = store
        self.senders = dict(senders)
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.source = source
        self.clock = clock
        self.owner = f"notify-{uuid.uuid4().hex[:8]}"
        self.policy = RetryPolicy(
            max_attempts=settings.notify_attempts,
            initial=settings.notify_backoff_initial_s,
            maximum=settings.notify_backoff_max_s,
        )
        self.lease = timedelta(seconds=settings.notify_delivery_lease_s)
        self.lanes = {c: _Lane(self, c, settings.concurrency_for(c)) for c in NotifyChannel}
        self.stopping = False
        self._active: dict[str, _Job] = {}  # deliveries this process is working on
        self._waiting: dict[str, tuple[_Job, asyncio.TimerHandle]] = {}  # between attempts
        self._finished: list[_Finished] = []
        self._recorder: asyncio.Task[None] | None = None
        self._claimed = 0  # claimed (sending) whose outcome is not recorded yet
        self._settled = asyncio.Event()
        self._settled.set()
        self._background: set[asyncio.Task[None]] = set()

    # — entry points —

    def has(self, channel: NotifyChannel) -> bool:
        """Whether this process has a sender for ``channel``."""
        return channel in self.senders

    def busy_with(self, did: str) -> bool:
        """Whether this process is working on a delivery (queued, in an attempt, between
        attempts)."""
        return did in self._active

    async def send(self, ready: Sequence[Ready]) -> list[Outcome]:
        """Send these deliveries and wait until each is settled (sent, failed after its
        last attempt, skipped, or left open by a stop); raises when one could not be taken
        or recorded (the database is away)."""
        futs = [self._submit(r) for r in ready]
        if futs:
            await asyncio.wait(set(futs))  # not cancelled with the caller: they settle anyway
        errors = [e for e in (f.exception() for f in futs) if e is not None]  # all retrieved
        if errors:
            raise errors[0]
        return [f.result() for f in futs]

    def spawn(self, ready: Sequence[Ready], what: str) -> None:
        """Send these in the background (released from quiet hours, resumed by the sweep):
        no record is in hand to park, so a failure is recorded and logged."""
        if not ready:
            return
        task = asyncio.create_task(self._in_background(list(ready), what), name=f"notify:{what}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _in_background(self, ready: list[Ready], what: str) -> None:
        try:
            outcomes = await self.send(ready)
        except Exception as exc:  # the database is away: they stay open for the next sweep
            log.warning("%s deliveries not sent", what, extra={"error": repr(exc)})
            return
        for o in outcomes:
            if o.result is Result.FAILED:
                extra = {"delivery": o.delivery.id, "error": o.error}
                log.warning("%s delivery failed", what, extra=extra)
            elif o.result is Result.SENT:
                log.info("%s delivery sent", what, extra={"delivery": o.delivery.id})

    def _submit(self, r: Ready) -> asyncio.Future[Outcome]:
        job = self._active.get(r.delivery.id)
        if job is not None:  # this process is on it already: its outcome is this one's
            return job.done
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self.stopping:
            fut.set_result(Outcome(Result.STOPPED, r.delivery))
            return fut
        job = _Job(r.delivery, r.take, fut)
        self._active[r.delivery.id] = job
        self.lanes[r.delivery.channel].put(job)
        return fut

    def settle(self, job: _Job, outcome: Outcome) -> None:
        """A job is over."""
        self._active.pop(job.delivery.id, None)
        if not job.done.done():
            job.done.set_result(outcome)

    def fail(self, job: _Job, exc: BaseException) -> None:
        """A job could not be taken or recorded; its caller sees why."""
        self._active.pop(job.delivery.id, None)
        if not job.done.done():
            job.done.set_exception(exc)

    # — console: recorded sent with the plan, written once that committed —

    def console_written(self, deliveries: Sequence[Delivery]) -> None:
        """Write committed console deliveries to the log (once: a redelivery never plans
        them again)."""
        sender = self.senders.get(NotifyChannel.CONSOLE)
        if not isinstance(sender, ConsoleSender):
            return
        health = self.health[NotifyChannel.CONSOLE]
        for d in deliveries:
            started = time.perf_counter()
            sender.write(outgoing(d))
            health.ok()
            self.metrics.attempt_seconds.labels("console", "ok").observe(
                time.perf_counter() - started
            )
            self.metrics.notifications.labels("console", Result.SENT.value).inc()
            self.metrics.delivery_seconds.labels("console").observe(0.0)

    def sent_event(self, d: Delivery, at: datetime) -> Envelope:
        """``notification.sent`` of a delivery."""
        event = NotificationSent(
            request_id=d.request_id,
            notification_id=d.notification_id,
            source_event_id=d.event_id,
            source_event_type=d.event_type,
            recipient=d.recipient,
            channel=d.channel,
            sent_at=at,
        )
        return Envelope.wrap(event, self.source, event_id=outcome_event_id(d.id, "sent"))

    def _failed_event(self, d: Delivery, error: str, at: datetime) -> Envelope:
        event = NotificationFailed(
            request_id=d.request_id,
            notification_id=d.notification_id,
            source_event_id=d.event_id,
            source_event_type=d.event_type,
            recipient=d.recipient,
            channel=d.channel,
            error=error[:500],
            attempts=d.attempts,
            failed_at=at,
        )
        eid = outcome_event_id(d.id, f"failed:{d.attempts}")
        return Envelope.wrap(event, self.source, event_id=eid)

    # — claiming a chunk —

    async def claim_and_attempt(self, lane: _Lane, chunk: Sequence[_Job]) -> None:
        """Take ``chunk`` (at most the lane's free slots) in one write per kind of take,
        then start an attempt for each delivery taken."""
        now = self.clock()
        until = now + timedelta(seconds=self.settings.timeout_for(lane.channel)) + self.lease
        token = uuid.uuid4().hex
        ids = [j.delivery.id for j in chunk]
        groups: dict[Take, list[str]] = {}
        for j in chunk:
            groups.setdefault(j.take, []).append(j.delivery.id)
        try:
            taken = 0
            for take, group in groups.items():
                taken += await self.store.claim(group, take, self.owner, until, token, now)
            if taken == len(chunk):  # all of them: what they are now follows from the claim
                claimed = {j.delivery.id: j.delivery.claimed(self.owner, until, now) for j in chunk}
            else:
                claimed = await self.store.claimed(ids, token) if taken else {}
        except Exception as exc:
            lane.freed(len(chunk))
            if is_transient(exc):
                # the claim may have been applied without the answer reaching us: nothing
                # was sent, so what it took goes back, free at once, when the database answers
                await self._hand_back(ids, token, repr(exc))
            for j in chunk:
                self.fail(j, exc)
            return
        for j in chunk:
            d = claimed.get(j.delivery.id)
            if d is None:  # sent, failed, uncertain, or another process has it
                lane.freed()
                self.settle(j, Outcome(Result.SKIPPED, j.delivery))
                continue
            j.delivery, j.runs = d, j.runs + 1
            self._claimed += 1
            self._settled.clear()
            task = asyncio.create_task(self._attempt(lane, j), name=f"notify:attempt:{d.id}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _hand_back(self, ids: Sequence[str], token: str, error: str) -> None:
        for wait in (*RIDE_OUT, 0.0):
            try:
                await self.store.hand_back(ids, token, f"take interrupted: {error}", self.clock())
                return
            except Exception as exc:
                if not is_transient(exc) or not wait:
                    log.warning("handing back a claim failed", extra={"error": repr(exc)})
                    return
                await asyncio.sleep(wait)

    # — one attempt —

    async def _attempt(self, lane: _Lane, job: _Job) -> None:
        channel = lane.channel
        try:
            provider_id = await self._try(
                channel, self.senders.get(channel), outgoing(job.delivery)
            )
        except DeliveryError as exc:
            if not exc.retryable or self.policy.exhausted(job.runs):
                self._record(_Finished(job, lane, Result.FAILED, error=str(exc)))
            else:
                delay = self.policy.delay(job.runs)
                self._record(_Finished(job, lane, None, error=str(exc), delay=delay))
            return
        self._record(_Finished(job, lane, Result.SENT, provider_id=provider_id))

    async def _try(
        self, channel: NotifyChannel, sender: ChannelSender | None, out: Outgoing
    ) -> str | None:
        """One attempt with the channel's timeout (the caller holds a slot of the channel)."""
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
            self._attempt_failed(channel, str(exc), started)
            raise
        except TimeoutError as exc:
            self._attempt_failed(channel, "timed out", started)
            raise DeliveryError(f"{channel.value} timed out", retryable=True) from exc
        except Exception as exc:  # a sender bug or an odd answer: a failed attempt
            self._attempt_failed(channel, repr(exc), started)
            raise DeliveryError(f"{channel.value}: {exc!r}", retryable=True) from exc
        finally:
            health.in_flight -= 1
            self.metrics.in_flight.labels(channel.value).dec()
        health.ok()
        self.metrics.attempt_seconds.labels(channel.value, "ok").observe(
            time.perf_counter() - started
        )
        return result

    def _attempt_failed(self, channel: NotifyChannel, error: str, started: float) -> None:
        self.health[channel].failed(error)
        self.metrics.attempt_seconds.labels(channel.value, "error").observe(
            time.perf_counter() - started
        )

    # — recording outcomes, in batches —

    def _record(self, finished: _Finished) -> None:
        self._finished.append(finished)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_all(), name="notify:outcomes")

    async def _record_all(self) -> None:
        """Write what finished meanwhile in one transaction, again while more finish."""
        while self._finished:
            batch, self._finished = self._finished, []
            now = self.clock()
            fx = Effects()
            retried: dict[str, Delivery] = {}
            for f in batch:
                d = f.job.delivery
                if f.result is Result.SENT:
                    self.store.record_sent(fx, d.id, self.owner, f.provider_id, now)
                    fx.emit(NOTIFICATIONS.name, self.sent_event(d, now))
                elif f.result is Result.FAILED:
                    error = f.error or "failed"
                    self.store.record_failed(fx, d.id, self.owner, error, now)
                    fx.emit(NOTIFICATIONS.name, self._failed_event(d, error, now))
                else:
                    retry_at = now + timedelta(seconds=f.delay)
                    r = d.retrying(f.error or "failed", retry_at, retry_at + self.lease, now)
                    self.store.record_retrying(fx, r, self.owner)
                    retried[d.id] = r
            try:
                await self._commit(fx)
            except Exception as exc:  # left ``sending``: uncertain, never sent again
                log.error(
                    "recording delivery outcomes failed",
                    extra={"deliveries": len(batch), "error": repr(exc)},
                )
                for f in batch:
                    self._unclaim(f.lane)
                    self.fail(f.job, exc)
                continue
            release: list[_Job] = []
            for f in batch:
                self._unclaim(f.lane)
                if f.job.delivery.id in retried:
                    f.job.delivery = retried[f.job.delivery.id]
                    if self._retry_later(f):
                        continue
                    release.append(f.job)
                else:
                    self._recorded(f, now)
            if release:  # stopping: hand them back at once
                await self._release([j.delivery.id for j in release])
                for j in release:
                    self.settle(j, Outcome(Result.STOPPED, j.delivery))

    async def _commit(self, fx: Effects) -> None:
        """Commit outcomes, riding out a short outage: left ``sending``, a delivery known
        sent (or known undelivered) would count as uncertain."""
        interrupted = False
        for wait in (*RIDE_OUT, 0.0):
            try:
                await self.uow.commit(fx)
                return
            except DuplicateWrite:
                if interrupted:  # the interrupted commit went through after all
                    return
                raise
            except Exception as exc:
                if not is_transient(exc) or not wait:
                    raise
                interrupted = True
                log.warning("recording outcomes failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(wait)

    def _unclaim(self, lane: _Lane) -> None:
        self._claimed -= 1
        if self._claimed <= 0:
            self._settled.set()
        lane.freed()

    def _recorded(self, f: _Finished, now: datetime) -> None:
        d, channel = f.job.delivery, f.lane.channel.value
        self.metrics.notifications.labels(channel, (f.result or Result.FAILED).value).inc()
        if f.result is Result.SENT:
            self.metrics.delivery_seconds.labels(channel).observe(
                max(0.0, (now - d.ready_at).total_seconds())
            )
            log.info(
                "notification sent",
                extra={"delivery": d.id, "channel": channel, "attempts": d.attempts},
            )
            self.settle(f.job, Outcome(Result.SENT, d))
        else:
            log.warning(
                "notification failed",
                extra={
                    "delivery": d.id,
                    "channel": channel,
                    "attempts": d.attempts,
                    "error": f.error,
                },
            )
            self.settle(f.job, Outcome(Result.FAILED, d, f.error))

    def _retry_later(self, f: _Finished) -> bool:
        """Queue a retried delivery again after its backoff; False when stopping."""
        if self.stopping:
            return False
        job = f.job
        self.metrics.retries.labels(f.lane.channel.value).inc()
        log.info(
            "delivery attempt failed; retrying",
            extra={"delivery": job.delivery.id, "attempt": job.delivery.attempts, "error": f.error},
        )
        job.take = Take.OWN_RETRY

        def again() -> None:
            self._waiting.pop(job.delivery.id, None)
            if self.stopping:
                return  # handed back by stop()
            f.lane.put(job)

        handle = asyncio.get_running_loop().call_later(f.delay, again)
        self._waiting[job.delivery.id] = (job, handle)
        return True

    async def _release(self, ids: Sequence[str]) -> None:
        try:
            await self.store.release_held(ids, self.owner, self.clock())
        except Exception as exc:  # their lease runs out instead
            log.warning("handing back deliveries failed", extra={"error": repr(exc)})

    # — stopping —

    async def _stop_taking(self) -> None:
        """No new chunk; the deliveries between attempts go back (pending, for the next start
        or another replica) and their jobs end as stopped; queued jobs are settled as
        stopped."""
        self.stopping = True
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for _job, handle in waiting:
            handle.cancel()
        if waiting:
            await self._release([job.delivery.id for job, _ in waiting])
            for job, _ in waiting:
                self.settle(job, Outcome(Result.STOPPED, job.delivery))
        for lane in self.lanes.values():
            lane.kick()

    async def stop_sending(self, stopping: asyncio.Event) -> None:
        """Once ``stopping`` is set, take no new chunk (what is queued is left pending for
        the next start or another replica) and hand back the deliveries waiting between
        attempts; the attempts under way finish. The consumer's batch waits for its
        deliveries' outcomes: one waiting out a retry's backoff (up to 30 s) would hold it
        past the stop's grace — seen in ``make faults``: notify's SIGTERM took 10.6 s."""
        await stopping.wait()
        await self._stop_taking()

    async def stop(self, grace: float | None = None) -> None:
        """Take no new chunk; hand the deliveries between attempts back; wait (bounded) for
        the attempts under way to be recorded, so they are not left uncertain, before the
        channel clients are closed."""
        await self._stop_taking()
        if grace is None:
            grace = max(self.settings.timeout_for(c) for c in NotifyChannel) + 10.0
        try:
            await asyncio.wait_for(self._settled.wait(), timeout=grace)
        except TimeoutError:
            log.warning("stopping with deliveries in flight", extra={"in_flight": self._claimed})
        if self._recorder is not None and not self._recorder.done():
            await asyncio.wait({self._recorder}, timeout=5.0)
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
