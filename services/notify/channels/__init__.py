"""Delivery channels — each a real protocol client in a module of its own: a signed generic
webhook, the WeCom (企业微信) and DingTalk (钉钉) group robots, SMTP email, SMS (approved
template code + params, through a gateway adapter, Alibaba Cloud SMS or Tencent Cloud SMS:
``sms.py``, ``aliyun_sms.py``, ``tencent_sms.py``) and the development console.

Adding a channel: a module with its sender and a :class:`Plug` (enabled by which settings,
how its sender is built), and its line in ``PLUGS`` below (plus its name in the contract's
``NotifyChannel`` and its settings in ``config.py``).
"""

from __future__ import annotations

from services.notify.channels import console, dingtalk, sms, smtp, webhook, wecom
from services.notify.channels.base import (
    ChannelHealth,
    ChannelSender,
    ClientFor,
    DeliveryError,
    Outgoing,
    Plug,
    sign,
    verify,
)
from services.notify.channels.console import ConsoleSender
from services.notify.channels.dingtalk import DingTalkSender, dingtalk_sign
from services.notify.channels.sms import SmsGatewaySender
from services.notify.channels.smtp import SmtpConfig, SmtpSender
from services.notify.channels.webhook import WebhookSender
from services.notify.channels.wecom import WeComSender
from services.notify.domain.delivery import notification_id
from tongxin.contracts.enums import NotifyChannel

# the registry: one line per channel
PLUGS: dict[NotifyChannel, Plug] = {
    p.channel: p
    for p in (
        webhook.PLUG,
        wecom.PLUG,
        dingtalk.PLUG,
        smtp.PLUG,
        sms.PLUG,
        console.PLUG,
    )
}

__all__ = [
    "PLUGS",
    "ChannelHealth",
    "ChannelSender",
    "ClientFor",
    "ConsoleSender",
    "DeliveryError",
    "DingTalkSender",
    "Outgoing",
    "Plug",
    "SmsGatewaySender",
    "SmtpConfig",
    "SmtpSender",
    "WeComSender",
    "WebhookSender",
    "dingtalk_sign",
    "notification_id",
    "sign",
    "verify",
]
