"""企业微信 group robot: ``POST <url>?key=<wecom_key>`` with a text or markdown message;
``errcode`` 0 is success, 45009 (over the rate limit) and -1 (system busy) are retried."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

RETRYABLE = {-1, 45009}


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
        resp = await post(self.client, "wecom", self.base_url, params={"key": key}, json=body)
        robot_answer(resp, "wecom", RETRYABLE)
        return None


def _build(s: NotifySettings, client: ClientFor) -> ChannelSender:
    return WeComSender(client(NotifyChannel.WECOM), s.notify_wecom_url or "")


PLUG = Plug(NotifyChannel.WECOM, lambda s: bool(s.notify_wecom_url), _build)
