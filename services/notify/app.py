"""Notify: the right message to the right person (FastAPI app + lifespan)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI

from services.notify import api
from services.notify.channels import PLUGS, ChannelHealth, ChannelSender
from services.notify.config import NotifySettings
from services.notify.dispatch import Dispatch
from services.notify.domain.directory import Directory
from services.notify.domain.kept import Retention
from services.notify.domain.plan import Planner
from services.notify.domain.rules import RuleSet
from services.notify.domain.templates import Templates
from services.notify.handlers import subscriptions
from services.notify.metrics import NotifyMetrics
from services.notify.service import NotifyService
from services.notify.store import INDEXES, NotifyStore, delivery_expiries, kept_expiries
from tongxin.contracts.enums import NotifyChannel
from tongxin.runtime.openapi import serve_docs
from tongxin.runtime.scheduler import BatchScheduler
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app


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
    """One sender per enabled channel (``channels.PLUGS``); HTTP ones get a client of their
    own with the channel's timeout and concurrency, closed when the service stops."""

    def client(channel: NotifyChannel) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            timeout=settings.timeout_for(channel),
            limits=httpx.Limits(max_connections=settings.concurrency_for(channel)),
            follow_redirects=False,
        )
        rt.closers.append(c.aclose)
        return c

    return {c: plug.build(settings, client) for c, plug in PLUGS.items() if plug.enabled(settings)}


def channel_health(
    settings: NotifySettings, enabled: frozenset[NotifyChannel]
) -> dict[NotifyChannel, ChannelHealth]:
    """A fresh health record per channel."""
    return {
        c: ChannelHealth(c, c in enabled, settings.concurrency_for(c), settings.timeout_for(c))
        for c in NotifyChannel
    }


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    """Build notify's app; clients are created when the lifespan starts."""
    settings = settings or NotifySettings()
    planner = load_planner(settings)

    async def setup(rt: ServiceRuntime) -> list[Subscription]:
        kept = Retention(
            after_close=timedelta(seconds=settings.notify_contacts_keep_s),
            cap=timedelta(seconds=settings.notify_contacts_cap_s),
        )
        store = NotifyStore(rt.db, retention=kept)
        metrics = NotifyMetrics(rt.metrics.registry)
        health = channel_health(settings, planner.enabled)
        senders = _senders(settings, rt)
        dispatch = Dispatch(rt.uow, store, senders, settings, metrics, health, rt.source)
        # closers run in reverse: the dispatch stops before the channel clients close (the
        # attempts under way are recorded first), after the scheduler and the sweep
        rt.closers.append(dispatch.stop)
        # as the process begins to stop, no new chunk is sent: the batch in hand ends with
        # what is under way (the rest stays pending for the next start), within the grace
        rt.run_in_background(
            "stop-sending", lambda: dispatch.stop_sending(rt.stopping), lambda: None
        )
        service = NotifyService(
            rt,
            store,
            planner,
            dispatch,
            metrics,
            lease=timedelta(seconds=settings.notify_delivery_lease_s),
            sweep_interval=settings.notify_sweep_interval_s,
        )
        rt.extra["ctx"] = api.NotifyContext(rt, settings, service, health)
        rt.retention += delivery_expiries(timedelta(seconds=settings.notify_deliveries_keep_s))
        rt.retention += kept_expiries(kept)
        scheduler = BatchScheduler(rt.db, rt.uow, service.on_release)
        rt.run_in_background("deadlines", scheduler.run, scheduler.stop)
        rt.run_in_background("resume", service.run_sweeper, service.stop_sweeper)
        return subscriptions(service)

    app = create_service_app(
        name="notify",
        title="Tongxin notify 消息通知",
        settings=settings,
        routers=[api.router],
        indexes=INDEXES,
        setup=setup,
    )
    serve_docs(app)  # /docs and /redoc with their assets served here, not from a CDN
    return app
