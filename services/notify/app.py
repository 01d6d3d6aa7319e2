"""Notify: the right message to the right person (FastAPI app + lifespan)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.notify import api
from services.notify.channels import ChannelSender, ConsoleSender, WebhookSender
from services.notify.config import NotifySettings
from services.notify.handlers import NotifyHandlers
from services.notify.store import INDEXES, NotifyStore
from tongxin.contracts.enums import NotifyChannel
from tongxin.contracts.events import CaseRouted, RequestSubmitted, TaskOffered, TaskUnmatched
from tongxin.contracts.topics import CASES, REQUESTS, VOLUNTEER_TASKS
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    """Build notify's app; clients are created when the lifespan starts."""
    settings = settings or NotifySettings()

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        store = NotifyStore(rt.db)
        rt.extra["ctx"] = api.NotifyContext(rt, settings, store)
        senders: dict[NotifyChannel, ChannelSender] = {NotifyChannel.CONSOLE: ConsoleSender()}
        if settings.notify_webhook_url:
            client = httpx.AsyncClient(timeout=settings.notify_timeout_s)
            rt.closers.append(client.aclose)
            senders[NotifyChannel.WEBHOOK] = WebhookSender(
                client, settings.notify_webhook_url, settings.notify_webhook_secret
            )
        h = NotifyHandlers(rt, store, senders, settings.notify_attempts)
        return [
            Subscription(
                "events",
                [REQUESTS.name, CASES.name, VOLUNTEER_TASKS.name],
                {
                    RequestSubmitted.ce_type(): h.on_request_submitted,
                    CaseRouted.ce_type(): h.on_event,
                    TaskOffered.ce_type(): h.on_event,
                    TaskUnmatched.ce_type(): h.on_event,
                },
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
