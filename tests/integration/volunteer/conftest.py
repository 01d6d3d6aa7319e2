"""An in-process volunteer service on the real stack, restartable, isolated by prefixes."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.volunteer.app import create_app
from services.volunteer.config import VolunteerSettings
from tests.support import headers_of, on_stack, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import CaseRouted, Event, RuleFired
from tongxin.contracts.topics import CASES, VOLUNTEER_TASKS
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.mongo import Doc, make_client
from tongxin.runtime.settings import REPO_ROOT

ALWAYS = [{"day": d, "start": "00:00", "end": "24:00"} for d in range(7)]


def volunteer(vid: str, name: str, compound: str, **extra: Any) -> dict[str, Any]:
    community = "community:chengdong" if compound in CHENGDONG else "community:liyuan"
    return {
        "id": vid,
        "name": name,
        "skills": ["elder_care"],
        "community": community,
        "compound": compound,
        "max_tasks": 3,
        "availability": ALWAYS,
        **extra,
    }


CHENGDONG = {"compound:dongsheng", "compound:hexie-jiayuan", "compound:lanting"}
SEED = {
    "brigade": {"name": "测试红马甲服务队", "leader": "杨书记"},
    "squads": [
        {
            "id": "squad:elder_care",
            "name": "助老小分队",
            "skill": "elder_care",
            "captain_id": "v:a",
        },
        {"id": "squad:legal", "name": "法治类小分队", "skill": "legal"},
    ],
    "volunteers": [
        volunteer("v:a", "甲", "compound:jinyuan"),
        volunteer("v:b", "乙", "compound:fuxing"),
        volunteer("v:c", "丙", "compound:lanting"),
        volunteer("v:legal", "丁", "compound:jinyuan", skills=["legal"]),
    ],
}


@dataclass
class Harness:
    """Starts, stops and restarts the volunteer service in this process."""

    stack: LocalStack
    settings: VolunteerSettings
    producer: AIOKafkaProducer
    mongo: AsyncMongoClient[Doc]
    app: FastAPI | None = None
    http: httpx.AsyncClient | None = None
    _exit: AsyncExitStack | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> AsyncDatabase[Doc]:
        return self.mongo[self.settings.db_name("volunteer")]

    async def start(self) -> None:
        self._exit = AsyncExitStack()
        self.app = create_app(self.settings)
        await self._exit.enter_async_context(self.app.router.lifespan_context(self.app))
        self.http = await self._exit.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app), base_url="http://volunteer"
            )
        )

    async def stop(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def auth(self, role: Role, sub: str) -> dict[str, str]:
        token = mint_token(self.settings.jwt_secret, sub=sub, role=role)
        return {"authorization": f"Bearer {token}"}

    def staff(self) -> dict[str, str]:
        return self.auth(Role.STAFF, "staff:1")

    def vol(self, vid: str) -> dict[str, str]:
        return self.auth(Role.VOLUNTEER, vid)

    async def publish(self, event: Event, event_id: str | None = None) -> Envelope:
        env = Envelope.wrap(event, "/tests/routing", event_id)
        key, value, headers = encode_record(env)
        await self.producer.send_and_wait(
            self.settings.topic(CASES.name), value=value, key=key, headers=headers
        )
        return env

    async def task_events(self, min_count: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """(type, data) of every event on the tasks topic, in order."""
        recs = await read_topic(
            self.stack.bootstrap, self.settings.topic(VOLUNTEER_TASKS.name), min_count=min_count
        )
        recs.sort(key=lambda r: (r.partition, r.offset))
        return [
            (
                headers_of(r)["ce_type"].removeprefix("tongxin.").rsplit(".v", 1)[0],
                json.loads(r.value),
            )
            for r in recs
        ]


def routed(case_id: str, *, skills: list[str] | None = None, **kw: Any) -> CaseRouted:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "request_id": f"YS-{case_id}",
        "case_id": case_id,
        "tier": "general",
        "category": "elderly_care",
        "community": "community:liyuan",
        "compound": "compound:jinyuan",
        "units": ["community:liyuan"],
        "classification": RuleFired(rule="test", reason="测试"),
        "acknowledge_by": now + timedelta(hours=24),
        "resolve_by": now + timedelta(days=7),
        "needs_volunteers": True,
        "skills": skills or ["elder_care"],
        **kw,
    }
    return CaseRouted.model_validate(data)


@pytest.fixture
async def harness(stack: LocalStack, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    run = unique("vt")
    seed_dir = Path(tempfile.mkdtemp(prefix=f"{run}-seed-"))
    shutil.copy(REPO_ROOT / "deploy" / "seed" / "communities.json", seed_dir)
    (seed_dir / "volunteers.json").write_text(json.dumps(SEED, ensure_ascii=False), "utf-8")
    overrides: dict[str, Any] = getattr(request, "param", {}) or {}
    settings = VolunteerSettings(
        **on_stack(stack, run),
        seed_dir=seed_dir,
        deadline_tick_s=0.1,
        outbox_poll_interval_s=0.1,
        gauge_refresh_s=0.5,
        **overrides,
    )
    producer = make_producer(stack.bootstrap, idempotence=settings.kafka_idempotence)
    await producer.start()
    mongo = make_client(stack.mongodb_uri)
    h = Harness(stack, settings, producer, mongo)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
        await producer.stop()
        await mongo.close()
        shutil.rmtree(seed_dir, ignore_errors=True)
