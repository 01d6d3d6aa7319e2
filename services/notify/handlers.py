"""What notify does with consumed events: deliver at most once, then emit notification.sent."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from pymongo.asynchronous.client_session import AsyncClientSession

from services.notify.channels import ChannelSender, DeliveryError
from services.notify.domain.rules import Delivery, deliveries_for
from services.notify.store import NotifyStore, delivery_id
from tongxin.contracts.enums import NotifyChannel
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import NotificationSent, RequestSubmitted, parse_ce_type
from tongxin.contracts.topics import NOTIFICATIONS
from tongxin.runtime.mongo import in_transaction
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)


class NotifyHandlers:
    """Consumes requests, cases and volunteer-task events."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: NotifyStore,
        senders: dict[NotifyChannel, ChannelSender],
        attempts: int,
    ) -> None:
        self.rt = rt
        self.store = store
        self.senders = senders
        self.attempts = attempts

    async def on_request_submitted(self, env: Envelope) -> None:
        """``request.submitted``: remember the submitter's contact (only notify keeps it)."""
        req = RequestSubmitted.model_validate(env.data)
        await self.store.save_contact(req.request_id, req.submitter.model_dump())

    async def on_event(self, env: Envelope) -> None:
        """Any event with deliveries: send each one at most once."""
        parsed = parse_ce_type(env.type)
        if parsed is None:
            return
        event_type = parsed[0]
        wanted = deliveries_for(event_type, env.data, webhook=NotifyChannel.WEBHOOK in self.senders)
        for d in wanted:
            if d.channel in self.senders:
                await self._deliver(env, event_type, d)

    async def _deliver(self, env: Envelope, event_type: str, d: Delivery) -> None:
        did = delivery_id(env.id, d.recipient, d.channel.value)
        claimed = await self.store.claim(
            {
                "_id": did,
                "event_id": env.id,
                "event_type": event_type,
                "request_id": env.key,
                "recipient": d.recipient,
                "channel": d.channel.value,
                "text": d.text,
                "created_at": datetime.now(UTC),
            }
        )
        if not claimed:
            return
        payload = {"event_type": event_type, "event_id": env.id, "request_id": env.key}
        sender = self.senders[d.channel]
        for attempt in range(1, self.attempts + 1):
            try:
                await sender.send(d.recipient, d.text, payload)
                break
            except DeliveryError as exc:
                if not exc.retryable or attempt == self.attempts:
                    await self.store.mark_failed(did, str(exc))
                    raise
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        sent = NotificationSent(
            request_id=env.key,
            notification_id=str(uuid.uuid5(uuid.NAMESPACE_URL, did)),
            source_event_id=env.id,
            source_event_type=event_type,
            recipient=d.recipient,
            channel=d.channel,
            sent_at=datetime.now(UTC),
        )
        out = Envelope.wrap(sent, self.rt.source, event_id=sent.notification_id)

        async def apply(session: AsyncClientSession) -> None:
            await self.store.mark_sent(session, did)
            await self.rt.outbox.add(session, NOTIFICATIONS.name, out)

        await in_transaction(self.rt.mongo, apply)
        self.rt.relay.nudge()
