"""Delivery channels — each a real protocol client: a signed generic webhook, the WeCom
(企业微信) and DingTalk (钉钉) group robots, SMTP email, an SMS gateway adapter (template
code + params, the Aliyun shape) and the development console.

A sender raises :class:`DeliveryError`; ``retryable`` says whether another attempt may help
(timeouts, 5xx, a garbled answer, the provider's rate limit), not for 4xx and refusals.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any, Protocol
from urllib.parse import quote_plus

import aiosmtplib
import httpx

from services.notify.domain.templates import Message
from tongxin.contracts.enums import NotifyChannel

log = logging.getLogger(__name__)


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


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk robot signature: base64 HMAC-SHA256 of ``timestamp + "\\n" + secret``."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def _http_status(resp: httpx.Response, what: str) -> None:
    """5xx (and 429, the 'slow down' answer) may pass; other non-2xx never will."""
    code = resp.status_code
    if 200 <= code < 300:
        return
    if code >= 500 or code == 429:
        raise DeliveryError(f"{what} answered {code}", retryable=True)
    raise DeliveryError(f"{what} refused: {code}", retryable=False)


async def _post(client: httpx.AsyncClient, what: str, url: str, **kw: Any) -> httpx.Response:
    try:
        return await client.post(url, **kw)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{what} timed out", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{what} unreachable: {type(exc).__name__}", retryable=True) from exc


def _json_answer(resp: httpx.Response, what: str) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError as exc:
        raise DeliveryError(f"{what} answered garbage (not JSON)", retryable=True) from exc
    if not isinstance(doc, dict):
        raise DeliveryError(f"{what} answered garbage (not an object)", retryable=True)
    return doc


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
        resp = await _post(self.client, "webhook", url, content=raw, headers=headers)
        _http_status(resp, "webhook")
        return None


# WeCom: 45009 = over the rate limit, -1 = system busy. DingTalk: 130101 = sending too fast.
_WECOM_RETRYABLE = {-1, 45009}
_DINGTALK_RETRYABLE = {-1, 130101}


def _robot_answer(resp: httpx.Response, what: str, retryable: set[int]) -> None:
    _http_status(resp, what)
    doc = _json_answer(resp, what)
    code = doc.get("errcode")
    if code == 0:
        return
    if not isinstance(code, int):
        raise DeliveryError(f"{what} answered garbage (no errcode)", retryable=True)
    msg = str(doc.get("errmsg", ""))[:200]
    raise DeliveryError(f"{what} errcode {code}: {msg}", retryable=code in retryable)


class WeComSender:
    """企业微信 group robot: ``POST <base>?key=<key>`` with a text or markdown message."""

    channel = NotifyChannel.WECOM

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url

    async def send(self, out: Outgoing) -> str | None:
        key = out.addresses.get("wecom_key")
        if not key:
            raise DeliveryError("no WeCom robot key for this recipient", retryable=False)
        if out.markdown:
            body: dict[str, Any] = {
                "msgtype": "markdown",
                "markdown": {"content": out.message.text},
            }
        else:
            body = {"msgtype": "text", "text": {"content": out.message.text}}
        resp = await _post(self.client, "wecom", self.base_url, params={"key": key}, json=body)
        _robot_answer(resp, "wecom", _WECOM_RETRYABLE)
        return None


class DingTalkSender:
    """钉钉 custom robot: ``POST <base>?access_token=…&timestamp=…&sign=…`` (加签 mode)."""

    channel = NotifyChannel.DINGTALK

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url

    async def send(self, out: Outgoing) -> str | None:
        token = out.addresses.get("dingtalk_token")
        if not token:
            raise DeliveryError("no DingTalk robot token for this recipient", retryable=False)
        params = {"access_token": token}
        secret = out.addresses.get("dingtalk_secret")
        if secret:
            ts = str(int(time.time() * 1000))
            params |= {"timestamp": ts, "sign": dingtalk_sign(secret, ts)}
        if out.markdown:
            body: dict[str, Any] = {
                "msgtype": "markdown",
                "markdown": {"title": out.message.title, "text": out.message.text},
            }
        else:
            body = {"msgtype": "text", "text": {"content": out.message.text}}
        # the sign is base64 and must be URL-encoded once
        query = "&".join(f"{k}={quote_plus(v)}" for k, v in params.items())
        sep = "&" if "?" in self.base_url else "?"
        resp = await _post(self.client, "dingtalk", f"{self.base_url}{sep}{query}", json=body)
        _robot_answer(resp, "dingtalk", _DINGTALK_RETRYABLE)
        return None


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to submit mail."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    security: str = "none"  # none | starttls | tls
    sender: str = "noreply@tongxin.example.gov.cn"
    sender_name: str = "同心平台"


class SmtpSender:
    """Email over SMTP (aiosmtplib). SMTP 4xx is transient and retried; 5xx is a refusal."""

    channel = NotifyChannel.EMAIL

    def __init__(self, cfg: SmtpConfig, timeout: float) -> None:
        self.cfg = cfg
        self.timeout = timeout

    def build(self, out: Outgoing) -> EmailMessage:
        """The MIME message (UTF-8 subject and body; Message-ID from the notification id)."""
        to = out.addresses.get("email")
        if not to:
            raise DeliveryError("no email address for this recipient", retryable=False)
        msg = EmailMessage()
        msg["From"] = formataddr((self.cfg.sender_name, self.cfg.sender))
        msg["To"] = formataddr((out.recipient_name, to))
        msg["Subject"] = out.message.title
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = f"<{out.notification_id}@tongxin>"
        msg["X-Tongxin-Event"] = str(out.meta.get("event_type", ""))
        msg["X-Tongxin-Request"] = str(out.meta.get("request_id", ""))
        msg.set_content(out.message.text, charset="utf-8")
        return msg

    async def send(self, out: Outgoing) -> str | None:
        msg = self.build(out)
        try:
            await aiosmtplib.send(
                msg,
                hostname=self.cfg.host,
                port=self.cfg.port,
                username=self.cfg.username,
                password=self.cfg.password,
                use_tls=self.cfg.security == "tls",
                start_tls=self.cfg.security == "starttls",
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [e.code for e in exc.recipients]
            raise DeliveryError(
                f"smtp refused recipient: {codes}", retryable=all(400 <= c < 500 for c in codes)
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"smtp answered {exc.code}: {exc.message[:200]}", retryable=400 <= exc.code < 500
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"smtp unreachable: {type(exc).__name__}", retryable=True) from exc
        return str(msg["Message-ID"])


# Aliyun-shaped answer codes that mean "later" rather than "never".
_SMS_RETRYABLE = {"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "SYSTEM_ERROR"}


class SmsGatewaySender:
    """SMS through an HTTP gateway adapter in the Aliyun SendSms shape.

    ``POST <gateway>`` with ``{"PhoneNumbers", "SignName", "TemplateCode", "TemplateParam",
    "OutId"}`` (TemplateParam is a JSON string, as providers take it), signed like the
    webhook when a secret is set. The gateway answers ``{"Code": "OK", "BizId": …}``.
    """

    channel = NotifyChannel.SMS

    def __init__(
        self, client: httpx.AsyncClient, url: str, sign_name: str, secret: str | None
    ) -> None:
        self.client = client
        self.url = url
        self.sign_name = sign_name
        self.secret = secret

    async def send(self, out: Outgoing) -> str | None:
        phone = out.addresses.get("phone")
        if not phone:
            raise DeliveryError("no phone number for this recipient", retryable=False)
        if not out.message.sms_code:
            raise DeliveryError("no SMS template code for this message", retryable=False)
        body = {
            "PhoneNumbers": phone,
            "SignName": self.sign_name,
            "TemplateCode": out.message.sms_code,
            "TemplateParam": json.dumps(dict(out.message.sms_params), ensure_ascii=False),
            "OutId": out.notification_id,
        }
        raw = json.dumps(body, ensure_ascii=False).encode()
        ts = str(int(time.time()))
        headers = {"content-type": "application/json; charset=utf-8", "x-tongxin-timestamp": ts}
        if self.secret:
            headers["x-tongxin-signature"] = sign(self.secret, ts, raw)
        resp = await _post(self.client, "sms gateway", self.url, content=raw, headers=headers)
        _http_status(resp, "sms gateway")
        doc = _json_answer(resp, "sms gateway")
        code = doc.get("Code")
        if code == "OK":
            return str(doc.get("BizId") or "") or None
        if not isinstance(code, str):
            raise DeliveryError("sms gateway answered garbage (no Code)", retryable=True)
        msg = str(doc.get("Message", ""))[:200]
        raise DeliveryError(f"sms gateway {code}: {msg}", retryable=code in _SMS_RETRYABLE)


class ConsoleSender:
    """Writes the message to the service log (development channel).

    The text greets people by name, so it is logged only in development (``tongxin up``);
    elsewhere the log line says who got which message, and the text stays in the
    delivery record (``GET /v1/notifications``).
    """

    channel = NotifyChannel.CONSOLE

    def __init__(self, show_text: bool = False) -> None:
        self.show_text = show_text

    async def send(self, out: Outgoing) -> str | None:
        extra: dict[str, str] = {"recipient": out.recipient}
        if self.show_text:
            extra |= {"title": out.message.title, "text": out.message.text}
        log.info("console notification", extra=extra)
        return None


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


def notification_id(did: str) -> str:
    """The stable id of a delivery as the outside world sees it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tongxin:notify:{did}"))
