"""Notify: the right message to the right person (FastAPI app + lifespan)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI

from services.notify import api
from services.notify.channels import (
    ChannelSender,
    ConsoleSender,
    DingTalkSender,
    SmsGatewaySender,
    SmtpConfig,
    SmtpSender,
    WebhookSender,
    WeComSender,
)
from services.notify.config import NotifySettings
from services.notify.delivery import Dispatcher, channel_health
from services.notify.domain.directory import Directory
from services.notify.domain.plan import Planner
from services.notify.domain.rules import RuleSet
from services.notify.domain.templates import Templates
from services.notify.handlers import RELEASE, NotifyHandlers
from services.notify.metrics import NotifyMetrics
from services.notify.store import INDEXES, NotifyStore
from tongxin.contracts.enums import NotifyChannel
from tongxin.contracts.events import EVENT_MODELS
from tongxin.contracts.topics import CASES, REQUESTS, VOLUNTEER_TASKS
from tongxin.runtime.scheduler import DeadlineScheduler, DeadlineStore
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app

CONSUMED = (REQUESTS, CASES, VOLUNTEER_TASKS)


def _yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_planner(settings: NotifySettings) -> Planner:
    """Rules, directory and templates from notify's config files (fails fast if invalid)."""
    directory = Directory(_yaml(settings.notify_directory_file))
    rules = RuleSet(_yaml(settings.notify_rules_file))
    templates = Templates(
        _yaml(settings.notify_templates_file),
        strict=settings.strict_templates,
        unit_name=directory.name_of,
    )
    missing = sorted({r.template for r in rules.rules} - set(templates.specs))
    if missing:
        raise ValueError(f"rules name templates that do not exist: {missing}")
    return Planner(
        rules=rules,
        directory=directory,
        templates=templates,
        enabled=settings.enabled_channels(),
        default_webhook=bool(settings.notify_webhook_url),
        console_fallback=settings.notify_console_fallback,
    )


def _senders(settings: NotifySettings, rt: ServiceRuntime) -> dict[NotifyChannel, ChannelSender]:
    """One client per channel, with that channel's timeout; closed when the service stops."""

    def client(channel: NotifyChannel) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            timeout=settings.timeout_for(channel),
            limits=httpx.Limits(max_connections=settings.concurrency_for(channel)),
            follow_redirects=False,
        )
        rt.closers.append(c.aclose)
        return c

    senders: dict[NotifyChannel, ChannelSender] = {
        NotifyChannel.WEBHOOK: WebhookSender(
            client(NotifyChannel.WEBHOOK),
            settings.notify_webhook_url,
            settings.notify_webhook_secret,
        )
    }
    if settings.notify_console:
        senders[NotifyChannel.CONSOLE] = ConsoleSender(show_text=settings.env == "development")
    if settings.notify_wecom_url:
        senders[NotifyChannel.WECOM] = WeComSender(
            client(NotifyChannel.WECOM), settings.notify_wecom_url
        )
    if settings.notify_dingtalk_url:
        senders[NotifyChannel.DINGTALK] = DingTalkSender(
            client(NotifyChannel.DINGTALK), settings.notify_dingtalk_url
        )
    if settings.notify_smtp_host:
        cfg = SmtpConfig(
            host=settings.notify_smtp_host,
            port=settings.notify_smtp_port,
            username=settings.notify_smtp_username,
            password=settings.notify_smtp_password,
            security=settings.notify_smtp_security,
            sender=settings.notify_smtp_from,
            sender_name=settings.notify_smtp_from_name,
        )
        senders[NotifyChannel.EMAIL] = SmtpSender(cfg, settings.timeout_for(NotifyChannel.EMAIL))
    if settings.notify_sms_gateway_url:
        senders[NotifyChannel.SMS] = SmsGatewaySender(
            client(NotifyChannel.SMS),
            settings.notify_sms_gateway_url,
            settings.notify_sms_sign_name,
            settings.notify_sms_secret,
        )
    return senders


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    """Build notify's app; clients are created when the lifespan starts."""
    settings = settings or NotifySettings()
    planner = load_planner(settings)

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        store = NotifyStore(rt.db)
        metrics = NotifyMetrics(rt.metrics.registry)
        health = channel_health(settings, planner.enabled)
        rt.extra["ctx"] = api.NotifyContext(rt, settings, store, planner, health)
        dispatcher = Dispatcher(rt, store, _senders(settings, rt), settings, metrics, health)
        deadlines = DeadlineStore(rt.db)
        h = NotifyHandlers(rt, store, planner, dispatcher, deadlines, metrics)
        rt.extra["handlers"] = h
        scheduler = DeadlineScheduler(deadlines, {RELEASE: h.on_release})
        rt.run_in_background("deadlines", scheduler.run, scheduler.stop)
        rt.tasks.append(asyncio.create_task(dispatcher.run_sweeper(), name="notify:resume"))
        # closers run in reverse: this one first, so attempts under way are recorded
        # before the channel clients close
        rt.closers.append(dispatcher.stop)
        handled = {t for topic in CONSUMED for t in topic.event_types}
        return [
            Subscription(
                "events",
                [t.name for t in CONSUMED],
                {ce: h.on_event for ce, m in EVENT_MODELS.items() if m.event_type in handled},
            )
        ]

    return create_service_app(
        name="notify",
        title="Tongxin notify 消息通知",
        settings=settings,
        routers=[api.router],
        indexes=INDEXES,
        setup=setup,
    )
