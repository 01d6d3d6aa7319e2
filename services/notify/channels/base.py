"""What every channel shares: the sender port, the error it raises, the message it sends,
HTTP answer handling, signatures, and the channel's in-process health.

A sender raises :class:`DeliveryError`; ``retryable`` says whether another attempt may help
(timeouts, 5xx, a garbled answer, the provider's rate limit), not for 4xx and refusals.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from services.notify.domain.templates import Message
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings


class DeliveryError(Exception):
    """A delivery attempt failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to one recipient over one channel."""

    delivery_id: str
    notification_id: str
    recipient: str
    recipient_name: str
    addresses: Mapping[str, str]
    message: Message
    markdown: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)


class ChannelSender(Protocol):
    """Sends one message (port); returns the provider's message id when there is one."""

    channel: NotifyChannel

    async def send(self, out: Outgoing) -> str | None:
        """Deliver, or raise DeliveryError."""
        ...


# an HTTP client for a channel, with its timeout and connection limit (closed at stop)
ClientFor = Callable[[NotifyChannel], httpx.AsyncClient]


@dataclass(frozen=True, slots=True)
class Plug:
    """How a channel joins notify: whether the settings enable it, and how its sender is
    built (one per process)."""

    channel: NotifyChannel
    enabled: Callable[[NotifySettings], bool]
    build: Callable[[NotifySettings, ClientFor], ChannelSender]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body`` (the generic webhook signature)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: int = 300
) -> bool:
    """What a receiver does: check the signature and that the timestamp is fresh."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def http_status(resp: httpx.Response, what: str) -> None:
    """5xx (and 429, the 'slow down' answer) may pass; other non-2xx never will."""
    code = resp.status_code
    if 200 <= code < 300:
        return
    if code >= 500 or code == 429:
        raise DeliveryError(f"{what} answered {code}", retryable=True)
    raise DeliveryError(f"{what} refused: {code}", retryable=False)


async def post(client: httpx.AsyncClient, what: str, url: str, **kw: Any) -> httpx.Response:
    """POST; a timeout or a connection error is a retryable failure."""
    try:
        return await client.post(url, **kw)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{what} timed out", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{what} unreachable: {type(exc).__name__}", retryable=True) from exc


def json_answer(resp: httpx.Response, what: str) -> dict[str, Any]:
    """The answer's JSON object; anything else is a garbled (retryable) answer."""
    try:
        doc = resp.json()
    except ValueError as exc:
        raise DeliveryError(f"{what} answered garbage (not JSON)", retryable=True) from exc
    if not isinstance(doc, dict):
        raise DeliveryError(f"{what} answered garbage (not an object)", retryable=True)
    return doc


def robot_answer(resp: httpx.Response, what: str, retryable: set[int]) -> None:
    """A group robot's answer: ``errcode`` 0 is success; ``retryable`` codes mean later."""
    http_status(resp, what)
    doc = json_answer(resp, what)
    code = doc.get("errcode")
    if code == 0:
        return
    if not isinstance(code, int):
        raise DeliveryError(f"{what} answered garbage (no errcode)", retryable=True)
    msg = str(doc.get("errmsg", ""))[:200]
    raise DeliveryError(f"{what} errcode {code}: {msg}", retryable=code in retryable)


@dataclass
class ChannelHealth:
    """In-process health of one channel, from its recent attempts."""

    channel: NotifyChannel
    enabled: bool
    concurrency: int
    timeout_s: float
    in_flight: int = 0
    consecutive_failures: int = 0
    attempts: int = 0
    failures: int = 0
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

    def ok(self) -> None:
        self.attempts += 1
        self.consecutive_failures = 0
        self.last_ok_at = datetime.now(UTC)

    def failed(self, error: str) -> None:
        self.attempts += 1
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error[:200]
        self.last_error_at = datetime.now(UTC)

    @property
    def status(self) -> str:
        """disabled | ok | degraded (a few failures in a row) | failing (five or more)."""
        if not self.enabled:
            return "disabled"
        if self.consecutive_failures >= 5:
            return "failing"
        return "degraded" if self.consecutive_failures else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "enabled": self.enabled,
            "status": self.status,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "in_flight": self.in_flight,
            "attempts": self.attempts,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_ok_at": self.last_ok_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }
