"""Email over SMTP (aiosmtplib; none / STARTTLS / TLS), UTF-8 subject and body,
``Message-ID`` = ``<notification_id@tongxin>``. SMTP 4xx is retried, 5xx is not."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import TYPE_CHECKING

import aiosmtplib

from services.notify.channels.base import ChannelSender, ClientFor, DeliveryError, Outgoing, Plug
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings


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


def _build(s: NotifySettings, _client: ClientFor) -> ChannelSender:
    cfg = SmtpConfig(
        host=s.notify_smtp_host or "",
        port=s.notify_smtp_port,
        username=s.notify_smtp_username,
        password=s.notify_smtp_password,
        security=s.notify_smtp_security,
        sender=s.notify_smtp_from,
        sender_name=s.notify_smtp_from_name,
    )
    return SmtpSender(cfg, s.timeout_for(NotifyChannel.EMAIL))


PLUG = Plug(NotifyChannel.EMAIL, lambda s: bool(s.notify_smtp_host), _build)
