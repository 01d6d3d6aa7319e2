"""Intake, routing, volunteer and notify running in this process on the real stack, one set
per test module, isolated by topic/db prefix; tokens for every kind of principal."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from services.intake.app import create_app as intake_app
from services.intake.config import IntakeSettings
from services.notify.app import create_app as notify_app
from services.notify.config import NotifySettings
from services.routing.app import create_app as routing_app
from services.routing.config import RoutingSettings
from services.volunteer.app import create_app as volunteer_app
from services.volunteer.config import VolunteerSettings
from tests.integration.volunteer.conftest import SEED
from tests.support import unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import Event
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.mongo import Doc, make_client
from tongxin.runtime.settings import REPO_ROOT

SECRET = "security-tests-secret-of-at-least-32-bytes"

# every kind of caller the matrix tries
PRINCIPALS: dict[str, tuple[Role, str | None, str]] = {
    "staff_town": (Role.STAFF, "town:yongbei", "staff-town"),
    "staff_liyuan": (Role.STAFF, "community:liyuan", "staff-liyuan"),
    "staff_chengdong": (Role.STAFF, "community:chengdong", "staff-chengdong"),
    "admin": (Role.ADMIN, None, "admin-1"),
    "dept_civil": (Role.DEPARTMENT, "dept:civil-affairs", "civil-1"),
    "dept_justice": (Role.DEPARTMENT, "dept:justice", "justice-1"),
    "dept_no_unit": (Role.DEPARTMENT, None, "dept-x"),
    "vol_a": (Role.VOLUNTEER, None, "v:a"),
    "vol_b": (Role.VOLUNTEER, None, "v:b"),
    "platform_1": (Role.PLATFORM, None, "hotline-12345"),
    "platform_2": (Role.PLATFORM, None, "other-county"),
}


@dataclass
class Services:
    """The four services and their clients."""

    stack: LocalStack
    run: str
    intake: httpx.AsyncClient
    routing: httpx.AsyncClient
    volunteer: httpx.AsyncClient
    notify: httpx.AsyncClient
    apps: dict[str, FastAPI]
    settings: dict[str, Any]
    producer: AIOKafkaProducer
    mongo: AsyncMongoClient[Doc]

    def db(self, service: str) -> Any:
        return self.mongo[f"{self.run}_{service}"]

    def topic(self, name: str) -> str:
        return f"{self.run}.{name}"

    def auth(self, who: str | None) -> dict[str, str]:
        """Headers for a named principal ("anon": none, "forged"/"expired": bad tokens)."""
        if who in (None, "anon"):
            return {}
        if who == "forged":
            token = mint_token("x" * 40, sub="admin-1", role=Role.ADMIN)
        elif who == "expired":
            token = mint_token(SECRET, sub="admin-1", role=Role.ADMIN, ttl_s=-60)
        else:
            role, unit, sub = PRINCIPALS[who]
            token = mint_token(SECRET, sub=sub, role=role, unit=unit)
        return {"authorization": f"Bearer {token}"}

    def client(self, service: str) -> httpx.AsyncClient:
        c: httpx.AsyncClient = getattr(self, service)
        return c

    async def publish(self, topic: str, event: Event) -> Envelope:
        env = Envelope.wrap(event, "/tests/security")
        key, value, headers = encode_record(env)
        await self.producer.send_and_wait(self.topic(topic), value=value, key=key, headers=headers)
        return env


def common(stack: LocalStack, run: str) -> dict[str, Any]:
    env = stack.service_env()
    return {
        "env": "test",
        "intake_anonymous_limit": False,  # on by default; a module may turn it on
        "jwt_secret": SECRET,
        "kafka_bootstrap": env["TONGXIN_KAFKA_BOOTSTRAP"],
        "mongodb_uri": env["TONGXIN_MONGODB_URI"],
        "kafka_idempotence": env["TONGXIN_KAFKA_IDEMPOTENCE"] == "true",
        "topic_prefix": f"{run}.",
        "db_prefix": f"{run}_",
        "deadline_scale": 1.0,
        "outbox_poll_interval_s": 0.1,
        "consumer_max_attempts": 2,
        "consumer_backoff_initial_s": 0.05,
        "consumer_backoff_max_s": 0.2,
    }


@pytest.fixture(scope="module")
async def services(stack: LocalStack, request: pytest.FixtureRequest) -> AsyncIterator[Services]:
    """The four services; a module may pass extra intake settings as ``INTAKE_SETTINGS``."""
    run = unique("sec")
    seed_dir = Path(tempfile.mkdtemp(prefix=f"{run}-seed-"))
    for name in ("communities.json", "units.json"):
        shutil.copy(REPO_ROOT / "deploy" / "seed" / name, seed_dir)
    (seed_dir / "volunteers.json").write_text(json.dumps(SEED, ensure_ascii=False), "utf-8")
    # the seeds are copies; the policy (routing decides with it, intake shows it) is the repo's
    base = {
        **common(stack, run),
        "routing_policy_file": REPO_ROOT / "deploy" / "policy" / "routing.json",
    }
    extra = getattr(request.module, "INTAKE_SETTINGS", {})
    settings = {
        "intake": IntakeSettings(**{**base, "seed_dir": seed_dir, **extra}),
        "routing": RoutingSettings(**base, routing_deadline_tick_s=0.2),
        "volunteer": VolunteerSettings(**base, seed_dir=seed_dir, deadline_tick_s=0.2),
        "notify": NotifySettings(**base),
    }
    factories = {
        "intake": intake_app,
        "routing": routing_app,
        "volunteer": volunteer_app,
        "notify": notify_app,
    }
    producer = make_producer(stack.bootstrap, idempotence=base["kafka_idempotence"])
    await producer.start()
    mongo = make_client(stack.mongodb_uri)
    async with AsyncExitStack() as exit_stack:
        apps: dict[str, FastAPI] = {}
        clients: dict[str, httpx.AsyncClient] = {}
        for name, factory in factories.items():
            app = factory(settings[name])  # type: ignore[operator]
            await exit_stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await exit_stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", timeout=30
                )
            )
            apps[name] = app
        yield Services(
            stack,
            run,
            clients["intake"],
            clients["routing"],
            clients["volunteer"],
            clients["notify"],
            apps,
            settings,
            producer,
            mongo,
        )
    await producer.stop()
    await mongo.close()
    shutil.rmtree(seed_dir, ignore_errors=True)
