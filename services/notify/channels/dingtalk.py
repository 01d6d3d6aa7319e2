"""钉钉 custom robot, 加签 mode: ``POST <url>?access_token=…&timestamp=<ms>&sign=…``;
``errcode`` 0 is success, 130101 (sending too fast) and -1 are retried."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import httpx

from services.notify.channels.base import (
    ChannelSender,
    ClientFor,
    DeliveryError,
    Outgoing,
    Plug,
    post,
    robot_answer,
)
from tongxin.contracts.enums import NotifyChannel

if TYPE_CHECKING:
    from services.notify.config import NotifySettings

RETRYABLE = {-1, 130101}


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk robot signature: base64 HMAC-SHA256 of ``timestamp + "\\n" + secret``."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


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
        resp = await post(self.client, "dingtalk", f"{self.base_url}{sep}{query}", json=body)
        robot_answer(resp, "dingtalk", RETRYABLE)
        return None


def _build(s: NotifySettings, client: ClientFor) -> ChannelSender:
    return DingTalkSender(client(NotifyChannel.DINGTALK), s.notify_dingtalk_url or "")


PLUG = Plug(NotifyChannel.DINGTALK, lambda s: bool(s.notify_dingtalk_url), _build)
