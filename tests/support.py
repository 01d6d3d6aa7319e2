"""Helpers for tests that use the real local stack: waiting, reading topics, a webhook sink."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from tongxin.devstack.stack import LocalStack

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """Await ``probe`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {what} (last={last!r})")


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def read_topic(
    bootstrap: str, topic: str, *, min_count: int = 0, timeout: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` from the beginning (waits for at least ``min_count``)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= min_count:
                # drained what is there now once the minimum is met
                end = await consumer.end_offsets(list(consumer.assignment()))
                pos = {tp: await consumer.position(tp) for tp in consumer.assignment()}
                if all(pos[tp] >= end[tp] for tp in end):
                    break
    finally:
        await consumer.stop()
    return records


def headers_of(rec: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """A record's headers as text."""
    return {k: v.decode() for k, v in rec.headers}


@dataclass
class WebhookSink:
    """A real HTTP server that records every POSTed JSON body."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def start(self) -> WebhookSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.bodies.append(json.loads(raw))
                self.send_response(sink.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def matching(self, **kv: Any) -> list[dict[str, Any]]:
        """Bodies whose fields equal ``kv``."""
        return [b for b in list(self.bodies) if all(b.get(k) == v for k, v in kv.items())]


def on_stack(stack: LocalStack, run: str) -> dict[str, Any]:
    """The settings that put a service on the test stack, its names isolated by ``run``
    (for ``ServiceSettings`` and every service's settings class)."""
    return {
        "env": "test",
        "intake_anonymous_limit": False,  # on by default; tests submit in bulk
        "kafka_bootstrap": stack.bootstrap,
        "mongodb_uri": stack.mongodb_uri,
        "kafka_idempotence": stack.broker_kind != "tansu",
        "topic_prefix": f"{run}.",
        "db_prefix": f"{run}_",
    }
