"""In-process routing replicas on the real stack, restartable, isolated by prefixes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.routing.app import create_app
from services.routing.config import RoutingSettings
from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import Event, RequestSubmitted, Submitter
from tongxin.contracts.topics import CASES, INBOUND_CASE_COMMANDS, REQUESTS
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.mongo import Doc, make_client


@dataclass
class Replica:
    """One routing service running in this process."""

    settings: RoutingSettings
    app: FastAPI | None = None
    http: httpx.AsyncClient | None = None
    _exit: AsyncExitStack | None = None

    async def start(self) -> None:
        self._exit = AsyncExitStack()
        self.app = create_app(self.settings)
        await self._exit.enter_async_context(self.app.router.lifespan_context(self.app))
        self.http = await self._exit.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://r")
        )

    async def stop(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = None


@dataclass
class Routing:
    """Replicas sharing one database and topic prefix, plus helpers."""

    stack: LocalStack
    settings: RoutingSettings
    producer: AIOKafkaProducer
    mongo: AsyncMongoClient[Doc]
    replicas: list[Replica] = field(default_factory=list)
    seq: int = 0

    @property
    def http(self) -> httpx.AsyncClient:
        assert self.replicas[0].http is not None
        return self.replicas[0].http

    @property
    def db(self) -> AsyncDatabase[Doc]:
        return self.mongo[self.settings.db_name("routing")]

    async def add_replica(self) -> Replica:
        r = Replica(self.settings)
        await r.start()
        self.replicas.append(r)
        return r

    def auth(
        self, role: Role = Role.STAFF, unit: str | None = None, sub: str = "u"
    ) -> dict[str, str]:
        token = mint_token(self.settings.jwt_secret, sub=sub, role=role, unit=unit)
        return {"authorization": f"Bearer {token}"}

    def dept(self, unit: str) -> dict[str, str]:
        return self.auth(Role.DEPARTMENT, unit, sub=f"{unit}:staff")

    async def publish(self, topic: str, event: Event) -> Envelope:
        env = Envelope.wrap(event, "/tests/routing")
        key, value, headers = encode_record(env)
        await self.producer.send_and_wait(
            self.settings.topic(topic), value=value, key=key, headers=headers
        )
        return env

    async def submit(self, category: str, **kw: Any) -> str:
        """Publish a request.submitted; returns the case id once routing opened it."""
        self.seq += 1
        rid = unique("YS-")
        fields: dict[str, Any] = {
            "request_id": rid,
            "channel": "app",
            "category": category,
            "title": f"测试诉求{self.seq}",
            "description": "测试",
            "community": "community:liyuan",
            "compound": "compound:jinyuan",
            "submitter": Submitter(name="张三"),
            "submitted_at": datetime.now(UTC),
        }
        fields.update(kw)
        await self.publish(REQUESTS.name, RequestSubmitted.model_validate(fields))
        case_id = f"C-{rid}"

        async def opened() -> Doc | None:
            return await self.db.cases.find_one({"_id": case_id})

        await eventually(opened, timeout=20, what=f"case {case_id} opened")
        return case_id

    async def command(self, event: Event) -> Envelope:
        return await self.publish(INBOUND_CASE_COMMANDS.name, event)

    async def case_events(
        self, case_id: str, min_count: int = 0
    ) -> list[tuple[str, dict[str, Any]]]:
        """(type, data) of this case's events on the cases topic, in order."""
        recs = await read_topic(
            self.stack.bootstrap, self.settings.topic(CASES.name), min_count=min_count
        )
        recs.sort(key=lambda r: (r.partition, r.offset))
        out = []
        seen: set[str] = set()
        for r in recs:
            data = json.loads(r.value)
            if data.get("case_id") == case_id:
                h = headers_of(r)
                ce = h["ce_type"].removeprefix("tongxin.").rsplit(".v", 1)[0]
                if h["ce_id"] in seen:
                    # the outbox delivers at least once (two replicas' relays may both
                    # publish a record); consumers deduplicate by event id, so do we
                    continue
                seen.add(h["ce_id"])
                out.append((ce, data))
        return out

    async def events_of(self, case_id: str, n: int, timeout: float = 20) -> list[str]:
        """Wait until the case has at least ``n`` events on the topic; their types."""

        async def enough() -> list[str] | None:
            types = [t for t, _ in await self.case_events(case_id, 1)]
            return types if len(types) >= n else None

        return await eventually(enough, timeout=timeout, interval=0.3, what=f"{n} events")

    async def case(self, case_id: str) -> Doc:
        doc = await self.db.cases.find_one({"_id": case_id})
        assert doc is not None
        return doc


def make_settings(stack: LocalStack, **overrides: Any) -> RoutingSettings:
    run = unique("rt")
    env = stack.service_env()
    base: dict[str, Any] = {
        "env": "test",
        "kafka_bootstrap": env["TONGXIN_KAFKA_BOOTSTRAP"],
        "mongodb_uri": env["TONGXIN_MONGODB_URI"],
        "kafka_idempotence": env["TONGXIN_KAFKA_IDEMPOTENCE"] == "true",
        "topic_prefix": f"{run}.",
        "db_prefix": f"{run}_",
        "outbox_poll_interval_s": 0.1,
        "routing_deadline_tick_s": 0.1,
        "routing_deadline_lease_s": 2.0,
        "routing_gauge_refresh_s": 0.3,
        "consumer_max_attempts": 2,
        "consumer_backoff_initial_s": 0.05,
        "consumer_backoff_max_s": 0.2,
    }
    base.update(overrides)
    return RoutingSettings(**base)


@pytest.fixture
async def routing(stack: LocalStack, request: pytest.FixtureRequest) -> AsyncIterator[Routing]:
    overrides: dict[str, Any] = getattr(request, "param", {}) or {}
    settings = make_settings(stack, **overrides)
    producer = make_producer(stack.bootstrap, idempotence=settings.kafka_idempotence)
    await producer.start()
    mongo = make_client(stack.mongodb_uri)
    h = Routing(stack, settings, producer, mongo)
    await h.add_replica()
    try:
        yield h
    finally:
        for r in h.replicas:
            await r.stop()
        await producer.stop()
        await mongo.close()
