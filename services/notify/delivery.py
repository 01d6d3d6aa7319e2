"""Sending planned deliveries: claim, attempt with retries, record the outcome and its event.

At most once per (event, recipient, channel): a delivery is claimed with a lease before it
is sent; while an attempt is in flight it is ``sending``, and a crash there leaves it so —
it is never sent again. Between attempts it is ``retrying`` (known undelivered), so a
restart resumes it. The outcome and ``notification.sent`` / ``notification.failed`` are
written in one transaction with the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.client_session import AsyncClientSession

from services.notify.channels import ChannelHealth, ChannelSender, DeliveryError, Outgoing
from services.notify.config import NotifySettings
from services.notify.domain.templates import Message
from services.notify.metrics import NotifyMetrics
from services.notify.store import NotifyStore
from tongxin.contracts.enums import NotifyChannel
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import NotificationFailed, NotificationSent
from tongxin.contracts.topics import NOTIFICATIONS
from tongxin.runtime.consumer import RetryPolicy
from tongxin.runtime.mongo import Doc, in_transaction
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

SENT, FAILED, SKIPPED = "sent", "failed", "skipped"


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

    async def dispatch_event(self, event_id: str, *, reopen_failed: bool = False) -> list[Doc]:
        """Send every open delivery of an event, concurrently; returns those that failed."""
        ids = await self.store.open_deliveries(event_id, reopen_failed=reopen_failed)
        results = await asyncio.gather(*(self.dispatch(did) for did in ids))
        return [doc for outcome, doc in results if outcome == FAILED and doc is not None]

    async def dispatch(self, did: str, *, allow_deferred: bool = False) -> tuple[str, Doc | None]:
        """Send one delivery if it is still open; (sent | failed | skipped, its document)."""
        doc = await self.store.claim(did, self.owner, self.lease, allow_deferred=allow_deferred)
        if doc is None:
            return SKIPPED, None
        channel = NotifyChannel(doc["channel"])
        sender = self.senders.get(channel)
        ready_at = doc.get("not_before") or doc["created_at"]
        out = Outgoing(
            delivery_id=did,
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
        attempt = int(doc.get("attempts") or 0)  # over the delivery's life (DLQ replays too)
        run = 0  # in this dispatch: what the retry policy counts
        while True:
            attempt += 1
            run += 1
            if not await self.store.mark_attempt(did, self.owner, attempt):
                return SKIPPED, None  # another process took it over
            try:
                provider_id = await self._attempt(channel, sender, out)
            except DeliveryError as exc:
                error = str(exc)
                if exc.retryable and not self.policy.exhausted(run):
                    delay = self.policy.delay(run)
                    retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                    await self.store.mark_retrying(did, self.owner, error, retry_at)
                    self.metrics.retries.labels(channel.value).inc()
                    log.info(
                        "delivery attempt failed; retrying",
                        extra={"delivery": did, "attempt": attempt, "error": error},
                    )
                    await asyncio.sleep(delay)
                    continue
                await self._failed(doc, channel, error, attempt)
                return FAILED, {**doc, "last_error": error, "attempts": attempt}
            await self._sent(doc, channel, provider_id, attempt, ready_at)
            return SENT, doc

    async def _attempt(
        self, channel: NotifyChannel, sender: ChannelSender | None, out: Outgoing
    ) -> str | None:
        """One attempt under the channel's concurrency limit and timeout."""
        health = self.health[channel]
        if sender is None:
            raise DeliveryError(f"channel {channel.value} is not configured", retryable=False)
        async with self._limits[channel]:
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

    async def _sent(
        self,
        doc: Doc,
        channel: NotifyChannel,
        provider_id: str | None,
        attempts: int,
        ready_at: datetime,
    ) -> None:
        now = datetime.now(UTC)
        event = NotificationSent(
            request_id=doc["request_id"],
            notification_id=doc["notification_id"],
            source_event_id=doc["event_id"],
            source_event_type=doc["event_type"],
            recipient=doc["recipient"],
            channel=channel,
            sent_at=now,
        )
        env = Envelope.wrap(event, self.rt.source, event_id=_event_id(doc, "sent"))

        async def txn(session: AsyncClientSession) -> None:
            await self.store.mark_sent(session, doc["_id"], provider_id)
            await self.rt.outbox.add(session, NOTIFICATIONS.name, env)

        await in_transaction(self.rt.mongo, txn)
        self.rt.relay.nudge()
        self.metrics.notifications.labels(channel.value, SENT).inc()
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
