"""The generic webhook: JSON POST, signed with ``x-tongxin-signature`` = hex HMAC-SHA256 of
``<timestamp>.<body>``. The default URL (``TONGXIN_NOTIFY_WEBHOOK_URL``) receives every
staff notification; other recipients may have their own URL in the directory."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import httpx

from services.notify.channels.base import (
    ChannelSender,
    ClientFor,
    DeliveryError,
    Outgoing,
    Plug,
    http_status,
    post,
    sign,
)
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings


class WebhookSender:
    """POSTs JSON, signed: ``x-tongxin-signature`` = hex HMAC-SHA256 of ``<timestamp>.<body>``."""

    channel = NotifyChannel.WEBHOOK

    def __init__(self, client: httpx.AsyncClient, url: str | None, secret: str | None) -> None:
        self.client = client
        self.url = url
        self.secret = secret

    async def send(self, out: Outgoing) -> str | None:
        url = out.addresses.get("webhook") or self.url
        if not url:
            raise DeliveryError("no webhook URL for this recipient", retryable=False)
        body = {
            **out.meta,
            "notification_id": out.notification_id,
            "recipient": out.recipient,
            "recipient_name": out.recipient_name,
            "title": out.message.title,
            "text": out.message.text,
        }
        raw = json.dumps(body, ensure_ascii=False).encode()
        ts = str(int(time.time()))
        headers = {
            "content-type": "application/json; charset=utf-8",
            "x-tongxin-timestamp": ts,
            "x-tongxin-delivery": out.notification_id,
        }
        if self.secret:
            headers["x-tongxin-signature"] = sign(self.secret, ts, raw)
        resp = await post(self.client, "webhook", url, content=raw, headers=headers)
        http_status(resp, "webhook")
        return None


def _build(s: NotifySettings, client: ClientFor) -> ChannelSender:
    return WebhookSender(
        client(NotifyChannel.WEBHOOK), s.notify_webhook_url, s.notify_webhook_secret
    )


# always on: per-recipient URLs work without a default one
PLUG = Plug(NotifyChannel.WEBHOOK, lambda _s: True, _build)
