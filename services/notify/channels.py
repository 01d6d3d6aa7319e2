"""Delivery channels: a signed generic webhook and the development console."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A delivery attempt failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class ChannelSender(Protocol):
    """Sends one message (port)."""

    async def send(self, recipient: str, text: str, payload: dict[str, Any]) -> None:
        """Deliver, or raise DeliveryError."""
        ...


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSender:
    """POSTs JSON to a URL; 5xx and timeouts are retryable, 4xx are not."""

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str | None) -> None:
        self.client = client
        self.url = url
        self.secret = secret

    async def send(self, recipient: str, text: str, payload: dict[str, Any]) -> None:
        body = json.dumps({**payload, "recipient": recipient, "text": text}, ensure_ascii=False)
        raw = body.encode()
        ts = str(int(time.time()))
        headers = {"content-type": "application/json", "x-tongxin-timestamp": ts}
        if self.secret:
            headers["x-tongxin-signature"] = sign(self.secret, ts, raw)
        try:
            resp = await self.client.post(self.url, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {exc!r}", retryable=True) from exc
        if resp.status_code >= 500:
            raise DeliveryError(f"webhook answered {resp.status_code}", retryable=True)
        if resp.status_code >= 400:
            raise DeliveryError(f"webhook refused: {resp.status_code}", retryable=False)


class ConsoleSender:
    """Writes the message to the service log (development channel)."""

    async def send(self, recipient: str, text: str, payload: dict[str, Any]) -> None:
        log.info("console notification", extra={"recipient": recipient, "text": text})
