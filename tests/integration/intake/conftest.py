"""One in-process intake per test package, on the real stack, isolated by topic/db prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import create_app
from services.intake.config import IntakeSettings
from tests.support import eventually, headers_of, on_stack, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import Event
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.mongo import Doc

BODY: dict[str, Any] = {
    "channel": "app",
    "category": "public_facilities",
    "title": "路灯不亮",
    "description": "3栋门口的路灯坏了一个多星期，晚上出行很不方便。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "张秀英", "phone": "13812341234"},
    "attributes": {"facility": "street_light"},
}


@dataclass
class Intake:
    """A running intake and what tests need around it."""

    app: FastAPI
    http: httpx.AsyncClient
    settings: IntakeSettings
    stack: LocalStack
    producer: AIOKafkaProducer
    db: AsyncDatabase[Doc]

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def token(self, role: Role = Role.STAFF, unit: str | None = None, sub: str = "t") -> str:
        return mint_token(self.settings.jwt_secret, sub=sub, role=role, unit=unit)

    def staff(self, role: Role = Role.STAFF, unit: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, unit)}"}

    async def submit(self, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return await self.http.post("/v1/requests", json=body or BODY, **kw)

    async def new_request(self, **overrides: Any) -> dict[str, Any]:
        """Submit a fresh (not duplicate) request and return the answer."""
        body = {**BODY, "title": unique("事项"), "description": unique("说明说明说明"), **overrides}
        r = await self.submit(body)
        assert r.status_code == 201, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def publish(self, contract_topic: str, event: Event, **env_kw: Any) -> Envelope:
        env = Envelope.wrap(event, "/tests/routing", **env_kw)
        key, value, headers = encode_record(env)
        await self.producer.send_and_wait(
            self.topic(contract_topic), value=value, key=key, headers=headers
        )
        return env

    async def view(self, rid: str) -> dict[str, Any]:
        r = await self.http.get(f"/v1/requests/{rid}", headers=self.staff())
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def wait_status(self, rid: str, status: str, timeout: float = 20) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            v = await self.view(rid)
            return v if v["status"] == status else None

        return await eventually(probe, timeout=timeout, what=f"{rid} becomes {status}")

    async def records(
        self, contract_topic: str, key: str, min_count: int = 1
    ) -> list[tuple[dict[str, str], dict[str, Any]]]:
        import json

        async def probe() -> list[tuple[dict[str, str], dict[str, Any]]]:
            recs = await read_topic(
                self.stack.bootstrap, self.topic(contract_topic), min_count=0, timeout=3
            )
            mine = [(headers_of(r), json.loads(r.value)) for r in recs if r.key == key.encode()]
            return mine if len(mine) >= min_count else []

        return await eventually(probe, timeout=30, what=f"{min_count} records on {contract_topic}")


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="package")
async def intake(stack: LocalStack) -> AsyncIterator[Intake]:
    run = unique("it")
    settings = IntakeSettings(
        **on_stack(stack, run),
        deadline_scale=0.001,
        outbox_poll_interval_s=0.2,
        consumer_max_attempts=2,
        consumer_backoff_initial_s=0.05,
        consumer_backoff_max_s=0.2,
    )
    app = create_app(settings)
    producer = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await producer.start()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://intake", timeout=30
        ) as http:
            yield Intake(app, http, settings, stack, producer, client[settings.db_name("intake")])
    await producer.stop()
    await client.close()
