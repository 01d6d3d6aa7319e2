"""SMS: through a generic HTTP gateway adapter, or Alibaba Cloud SMS / Tencent Cloud SMS
through their official SDKs (``aliyun_sms``, ``tencent_sms``), chosen by
``TONGXIN_NOTIFY_SMS_PROVIDER``.

The gateway: ``POST <gateway>`` with ``{"PhoneNumbers", "SignName", "TemplateCode",
"TemplateParam", "OutId"}`` (TemplateParam is a JSON string, as providers take it), signed
like the webhook when a secret is set. It answers ``{"Code": "OK", "BizId": …}``; the
throttling codes are retried.

What the three share is here: a message's SMS code (templates.yaml ``sms.code``) becomes the
provider's template through ``TONGXIN_NOTIFY_SMS_TEMPLATES``; a provider's answer code is
looked up in that provider's table (:data:`Verdict`): retried, refused (this message or
number will never go), or a configuration error — refused too, and logged at ERROR, since
no message will go until an operator fixes the credentials, sign, template or account. The
recipient's number never reaches a log or a delivery's error: providers' messages are
scrubbed of it (and of any long digit run) first.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

import httpx

from services.notify.channels.base import (
    ChannelSender,
    ClientFor,
    DeliveryError,
    Outgoing,
    Plug,
    http_status,
    json_answer,
    post,
    sign,
)
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings, SmsTemplateMap

log = logging.getLogger(__name__)

# Aliyun-shaped answer codes that mean "later" rather than "never".
RETRYABLE = {"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "SYSTEM_ERROR"}


class Verdict(StrEnum):
    """What a provider's answer code means for the delivery."""

    RETRY = "retry"  # later may work: throttling, the provider's own trouble, the network
    REFUSED = "refused"  # never for this message or number: give up
    CONFIG = "config"  # never until an operator fixes the setup: give up, log at ERROR


_DIGITS = re.compile(r"\+?\d{7,}")
_CONFIG_LOG_EVERY_S = 60.0
_config_logged: dict[tuple[str, str], float] = {}


def scrub(text: object, phone: str | None = None, limit: int = 200) -> str:
    """A provider's message made safe to keep and log: the number and digit runs masked."""
    s = str(text or "")
    if phone:
        s = s.replace(phone, "***")
    return _DIGITS.sub("***", s)[:limit]


def phone_of(out: Outgoing) -> str:
    """The recipient's number, without blanks and dashes."""
    phone = re.sub(r"[\s-]", "", out.addresses.get("phone") or "")
    if not phone:
        raise DeliveryError("no phone number for this recipient", retryable=False)
    return phone


def refusal(
    provider: str,
    code: str,
    message: object,
    verdict: Verdict,
    phone: str | None = None,
) -> DeliveryError:
    """The DeliveryError for a provider's answer; a configuration error is also logged at
    ERROR (once a minute per code: every message would log it)."""
    msg = scrub(message, phone)
    if verdict is Verdict.CONFIG:
        now = time.monotonic()
        if now - _config_logged.get((provider, code), -_CONFIG_LOG_EVERY_S) >= _CONFIG_LOG_EVERY_S:
            _config_logged[(provider, code)] = now
            log.error(
                "SMS provider configuration error: no SMS goes out until it is fixed",
                extra={"provider": provider, "code": code, "error": msg},
            )
        return DeliveryError(f"{provider} sms configuration error {code}: {msg}", retryable=False)
    retry = verdict is Verdict.RETRY
    return DeliveryError(f"{provider} sms {code}: {msg}", retryable=retry)


def lookup(
    table: Mapping[str, Verdict],
    prefixes: tuple[tuple[str, Verdict], ...],
    code: str,
    default: Verdict,
) -> Verdict:
    """A code's verdict: the exact code, else the longest matching prefix, else ``default``."""
    if code in table:
        return table[code]
    for prefix, verdict in sorted(prefixes, key=lambda p: -len(p[0])):
        if code.startswith(prefix):
            return verdict
    return default


def template_for(
    provider: str, templates: Mapping[str, SmsTemplateMap], out: Outgoing, *, mapped_only: bool
) -> tuple[str, dict[str, str]]:
    """The provider's template id and its parameters (provider name → value, in its order)
    for a message; a message without an SMS code or a mapping is a configuration error."""
    code = out.message.sms_code
    if not code:
        raise DeliveryError("no SMS template code for this message", retryable=False)
    mapping = templates.get(code)
    ours = dict(out.message.sms_params)
    if mapping is None:
        if mapped_only:
            raise refusal(
                provider,
                "template-unmapped",
                f"no TONGXIN_NOTIFY_SMS_TEMPLATES entry for {code}",
                Verdict.CONFIG,
            )
        return code, ours
    named = mapping.named()
    if named is None:
        return mapping.id, ours
    missing = [o for o in named.values() if o not in ours]
    if missing:
        what = f"{code} has no parameter {', '.join(missing)} for {mapping.id}"
        raise refusal(provider, "template-params", what, Verdict.CONFIG)
    return mapping.id, {theirs: ours[o] for theirs, o in named.items()}


class SmsGatewaySender:
    """SMS through the gateway adapter; returns the provider's ``BizId``."""

    channel = NotifyChannel.SMS

    def __init__(
        self, client: httpx.AsyncClient, url: str, sign_name: str, secret: str | None
    ) -> None:
        self.client = client
        self.url = url
        self.sign_name = sign_name
        self.secret = secret

    async def send(self, out: Outgoing) -> str | None:
        phone = phone_of(out)
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
        resp = await post(self.client, "sms gateway", self.url, content=raw, headers=headers)
        http_status(resp, "sms gateway")
        doc = json_answer(resp, "sms gateway")
        code = doc.get("Code")
        if code == "OK":
            return str(doc.get("BizId") or "") or None
        if not isinstance(code, str):
            raise DeliveryError("sms gateway answered garbage (no Code)", retryable=True)
        msg = scrub(doc.get("Message", ""), phone)
        raise DeliveryError(f"sms gateway {code}: {msg}", retryable=code in RETRYABLE)


def _gateway(s: NotifySettings, client: ClientFor) -> ChannelSender:
    secret = s.notify_sms_secret.get_secret_value() if s.notify_sms_secret else None
    return SmsGatewaySender(
        client(NotifyChannel.SMS), s.notify_sms_gateway_url or "", s.notify_sms_sign_name, secret
    )


def _aliyun(s: NotifySettings, client: ClientFor) -> ChannelSender:
    from services.notify.channels.aliyun_sms import AliyunSmsSender  # imports the SDK

    return AliyunSmsSender.from_settings(s)


def _tencent(s: NotifySettings, client: ClientFor) -> ChannelSender:
    from services.notify.channels.tencent_sms import TencentSmsSender  # imports the SDK

    return TencentSmsSender.from_settings(s, client(NotifyChannel.SMS))


BUILDERS: dict[str, Callable[[NotifySettings, ClientFor], ChannelSender]] = {
    "gateway": _gateway,
    "aliyun": _aliyun,
    "tencent": _tencent,
}


def _enabled(s: NotifySettings) -> bool:
    # a provider's credentials are checked by the settings (refused when missing)
    return s.notify_sms_provider != "gateway" or bool(s.notify_sms_gateway_url)


def _build(s: NotifySettings, client: ClientFor) -> ChannelSender:
    return BUILDERS[s.notify_sms_provider](s, client)


PLUG = Plug(NotifyChannel.SMS, _enabled, _build)
