"""Notify in-process on the real stack: its app with a lifespan, an HTTP client, a publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.notify.app import create_app
from services.notify.config import NotifySettings
from services.notify.domain.delivery import Delivery
from services.notify.service import NotifyService
from tests.support import eventually, on_stack, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import CaseRouted, Event, RequestSubmitted, Submitter
from tongxin.contracts.topics import CASES, REQUESTS, VOLUNTEER_TASKS
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.mongo import Doc, make_client

FAST: dict[str, Any] = {
    "notify_attempts": 3,
    "notify_backoff_initial_s": 0.05,
    "notify_backoff_max_s": 0.2,
    "consumer_backoff_initial_s": 0.05,
    "consumer_backoff_max_s": 0.2,
    "outbox_poll_interval_s": 0.2,
}


def topic_of(event: Event) -> str:
    """The contract topic an event travels on."""
    head = event.event_type.split(".")[0]
    return {"request": REQUESTS, "case": CASES}.get(head, VOLUNTEER_TASKS).name


def stack_settings(stack: LocalStack, **kw: Any) -> NotifySettings:
    """Settings isolated by a fresh topic and database prefix."""
    run = unique("nt")
    return NotifySettings(**on_stack(stack, run), **{**FAST, **kw})


@dataclass
class Notify:
    """A running notify and what a test needs around it."""

    app: FastAPI
    settings: NotifySettings
    http: httpx.AsyncClient
    producer: AIOKafkaProducer
    mongo: AsyncMongoClient[Doc]

    @property
    def db(self) -> AsyncDatabase[Doc]:
        return self.mongo[self.settings.db_name("notify")]

    def token(self, role: Role = Role.STAFF, **kw: Any) -> dict[str, str]:
        t = mint_token(self.settings.jwt_secret, sub=kw.pop("sub", "tester"), role=role, **kw)
        return {"Authorization": f"Bearer {t}"}

    async def publish(self, event: Event, event_id: str | None = None) -> Envelope:
        env = Envelope.wrap(event, "/tests", event_id=event_id)
        key, value, headers = encode_record(env)
        await self.producer.send_and_wait(
            self.settings.topic(topic_of(event)), value=value, key=key, headers=headers
        )
        return env

    @property
    def service(self) -> NotifyService:
        """The running service (its use cases, and through it the store)."""
        service: NotifyService = self.app.state.rt.extra["ctx"].service
        return service

    async def deliveries(self, **filt: Any) -> list[Doc]:
        return [d async for d in self.db.deliveries.find(filt)]


@asynccontextmanager
async def running_notify(settings: NotifySettings) -> AsyncIterator[Notify]:
    """Start notify's lifespan (consumers, relay, scheduler) and stop it afterwards."""
    app = create_app(settings)
    producer = make_producer(settings.kafka_bootstrap, idempotence=settings.kafka_idempotence)
    mongo = make_client(settings.mongodb_uri)
    async with app.router.lifespan_context(app):
        await producer.start()
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://notify") as http:
                yield Notify(app, settings, http, producer, mongo)
        finally:
            await producer.stop()
            await mongo.close()


@dataclass
class Sweeps:
    """The resume sweeps of one running notify, each with the deliveries it found open —
    the marker that proves sweeps ran before a test asserts what they did not do."""

    found: list[set[str]] = field(default_factory=list)
    begun: int = 0

    @classmethod
    def watch(cls, n: Notify) -> Sweeps:
        """Record every sweep of ``n`` from now on (a wrapper at its store's query)."""
        store = n.service.store
        query = store.resumable
        sweeps = cls()

        async def resumable(now: datetime, limit: int) -> list[Delivery]:
            sweeps.begun += 1
            found: list[Delivery] = await query(now, limit)
            sweeps.found.append({d.id for d in found})
            return found

        store.resumable = resumable
        return sweeps

    async def more(self, count: int, timeout: float = 30.0) -> list[set[str]]:
        """Wait for ``count`` sweeps that start after this call; what each found open.
        (A process sweeps one pass at a time, and a pass starts on what its query found
        right after the query returns.)"""
        first = self.begun

        async def done() -> bool:
            return len(self.found) >= first + count

        await eventually(done, timeout=timeout, what=f"{count} more resume sweeps")
        return self.found[first : first + count]


# — sample events —


def submitted(rid: str) -> RequestSubmitted:
    return RequestSubmitted(
        request_id=rid,
        channel="app",
        category="sanitation",
        title="楼道垃圾",
        description="楼道垃圾无人清理",
        community="community:liyuan",
        submitter=Submitter(name="张三", phone="13800001111"),
        submitted_at=datetime.now(UTC),
    )


def routed(rid: str) -> CaseRouted:
    now = datetime.now(UTC)
    return CaseRouted(
        request_id=rid,
        case_id=f"C-{rid}",
        tier="routine",
        category="sanitation",
        community="community:liyuan",
        units=["community:liyuan"],
        classification={"rule": "everyday", "reason": "日常环境卫生事项"},
        acknowledge_by=now + timedelta(hours=1),
        resolve_by=now + timedelta(hours=24),
    )
