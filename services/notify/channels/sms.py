"""SMS through an HTTP gateway adapter in the Aliyun SendSms shape.

``POST <gateway>`` with ``{"PhoneNumbers", "SignName", "TemplateCode", "TemplateParam",
"OutId"}`` (TemplateParam is a JSON string, as providers take it), signed like the
webhook when a secret is set. The gateway answers ``{"Code": "OK", "BizId": …}``; the
throttling codes are retried.
"""

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
    json_answer,
    post,
    sign,
)
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings

# Aliyun-shaped answer codes that mean "later" rather than "never".
RETRYABLE = {"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "SYSTEM_ERROR"}


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
        resp = await post(self.client, "sms gateway", self.url, content=raw, headers=headers)
        http_status(resp, "sms gateway")
        doc = json_answer(resp, "sms gateway")
        code = doc.get("Code")
        if code == "OK":
            return str(doc.get("BizId") or "") or None
        if not isinstance(code, str):
            raise DeliveryError("sms gateway answered garbage (no Code)", retryable=True)
        msg = str(doc.get("Message", ""))[:200]
        raise DeliveryError(f"sms gateway {code}: {msg}", retryable=code in RETRYABLE)


def _build(s: NotifySettings, client: ClientFor) -> ChannelSender:
    return SmsGatewaySender(
        client(NotifyChannel.SMS),
        s.notify_sms_gateway_url or "",
        s.notify_sms_sign_name,
        s.notify_sms_secret,
    )


PLUG = Plug(NotifyChannel.SMS, lambda s: bool(s.notify_sms_gateway_url), _build)
