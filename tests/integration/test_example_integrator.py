"""examples/county_integrator.py against the real stack and a running intake.

The example is what an outside platform would run (aiokafka + the cloudevents SDK, no
Tongxin code): its request must be accepted by intake, and its status watcher must see the
masked status of that request with its own ce_source/ce_id echoed back.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.intake.app import create_app
from services.intake.config import IntakeSettings
from tests.support import eventually, on_stack, unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "county_integrator.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("county_integrator", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_the_example_uses_only_the_contract() -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(EXAMPLE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"aiokafka", "cloudevents"}
    assert example.INBOUND_TOPIC == "tongxin.inbound.requests.v1"
    assert example.STATUS_TOPIC == "tongxin.public.status.v1"


def test_request_event_is_a_binary_mode_cloudevent() -> None:
    event = example.request_event({"title": "路灯"}, "/county/12345", "T-1")
    key, value, headers = example.to_record(event)
    h = dict(headers)
    assert key == b"T-1"
    assert h["ce_id"] == b"T-1" and h["ce_source"] == b"/county/12345"
    assert h["ce_type"] == b"tongxin.request.submitted.v1"
    assert h["ce_specversion"] == b"1.0" and h["content-type"] == b"application/json"
    assert "ce_time" in h
    assert value.decode() == '{"title": "路灯"}'


class Running:
    def __init__(self, settings: IntakeSettings, db: AsyncDatabase[Doc]) -> None:
        self.settings = settings
        self.db = db

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix


@pytest.fixture(scope="module")
async def intake(stack: LocalStack) -> AsyncIterator[Running]:
    run = unique("ex")
    settings = IntakeSettings(**on_stack(stack, run), outbox_poll_interval_s=0.2)
    app = create_app(settings)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    async with app.router.lifespan_context(app):
        yield Running(settings, client[settings.db_name("intake")])
    await client.close()


async def _cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


async def test_submitted_request_is_accepted_and_its_status_is_seen(
    stack: LocalStack, intake: Running
) -> None:
    source = unique("/county/12345/")
    ticket = f"T-{uuid.uuid4().hex[:12]}"
    seen: list[Any] = []

    def mine(change: Any) -> bool:
        seen.append(change)
        return bool(change.external_id == ticket and change.external_source == source)

    watcher = asyncio.create_task(
        example.watch_status(stack.bootstrap, intake.prefix, mine, from_beginning=True)
    )
    # the outside platform submits with the example's command line
    out = await _cli(
        "--bootstrap",
        stack.bootstrap,
        "--topic-prefix",
        intake.prefix,
        "submit",
        "--source",
        source,
        "--id",
        ticket,
    )
    assert f"ce_id={ticket}" in out

    await asyncio.wait_for(watcher, 60)
    change = seen[-1]
    assert change.status == "submitted" and change.previous_status is None
    assert change.event["type"] == "tongxin.request.status.v1"
    assert change.event["partitionkey"] == change.request_id.encode()
    # masked: no name, no street address, the phone only as 138****1234
    assert change.data["phone_masked"] == "138****1234"
    assert "submitter" not in change.data and "张秀英" not in str(change.data)
    assert change.data["channel"] == "hotline"

    # intake accepted it: one stored request for (ce_source, ce_id)
    doc = await intake.db.requests.find_one({"external.source": source, "external.id": ticket})
    assert doc is not None and doc["_id"] == change.request_id
    assert doc["status"] == "submitted" and doc["category"] == "public_facilities"

    # the watch command prints that status change
    printed = await _cli(
        "--bootstrap",
        stack.bootstrap,
        "--topic-prefix",
        intake.prefix,
        "watch",
        "--from-beginning",
        "--count",
        "1",
    )
    assert change.request_id in printed and "→ submitted" in printed
    assert ticket in printed


async def test_resending_the_same_event_creates_no_second_request(
    stack: LocalStack, intake: Running
) -> None:
    source = unique("/county/12345/")
    ticket = f"T-{uuid.uuid4().hex[:12]}"
    data = {**example.EXAMPLE_REQUEST, "title": unique("重复发送")}
    for _ in range(3):
        assert await example.submit(stack.bootstrap, intake.prefix, data, source, ticket) == ticket
    # a later event of the same platform is handled, so the resends were handled before it
    marker = f"T-{uuid.uuid4().hex[:12]}"
    await example.submit(stack.bootstrap, intake.prefix, data, source, marker)

    async def marker_stored() -> int:
        return await intake.db.requests.count_documents({"external.id": marker})

    await eventually(marker_stored, timeout=60, what="the marker request is stored")
    count = await intake.db.requests.count_documents(
        {"external.source": source, "external.id": ticket}
    )
    assert count == 1
