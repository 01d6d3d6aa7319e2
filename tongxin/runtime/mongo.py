"""MongoDB access through PyMongo's async API (``AsyncMongoClient``, Motor's successor)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    PyMongoError,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")


class CommandTrace(monitoring.CommandListener):
    """Profiling aid: appends one line per database command to a file — service,
    command, collection, microseconds as the client saw them, error code (0: none) — for
    ``bench`` to add up. Enabled by ``TONGXIN_MONGO_TRACE=<file>``; off otherwise."""

    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 (lives with the process)
        self.tag = os.environ.get("TONGXIN_TRACE_TAG", str(os.getpid()))
        self.colls: dict[int, str] = {}

    def _line(self, request_id: int, name: str, micros: int, code: object) -> None:
        coll = self.colls.pop(request_id, "")
        self.out.write(f"{self.tag}\t{name}\t{coll}\t{micros}\t{code}\n")

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        coll = target if isinstance(target, str) else ""
        self.colls[event.request_id] = f"{event.database_name}.{coll}"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._line(event.request_id, event.command_name, event.duration_micros, 0)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        failure: Any = event.failure
        code = failure.get("code", "?") if isinstance(failure, dict) else "?"
        self._line(event.request_id, event.command_name, event.duration_micros, code)


def make_client(uri: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[Doc]:
    """Build the client (no I/O until first use); call only from a lifespan."""
    trace = os.environ.get("TONGXIN_MONGO_TRACE")
    return AsyncMongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        event_listeners=[CommandTrace(trace)] if trace else [],
    )


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One index a service's store needs."""

    collection: str
    keys: Sequence[tuple[str, int]]
    unique: bool = False
    name: str | None = None
    partial: Doc | None = None


async def ensure_indexes(db: AsyncDatabase[Doc], specs: Sequence[IndexSpec]) -> None:
    """Create the indexes (idempotent) and the collections they live on."""
    existing = set(await db.list_collection_names())
    for spec in specs:
        if spec.collection not in existing:
            try:
                await db.create_collection(spec.collection)
            except PyMongoError:  # created concurrently by another replica
                pass
            existing.add(spec.collection)
        kwargs: Doc = {"unique": spec.unique}
        if spec.name:
            kwargs["name"] = spec.name
        if spec.partial:
            kwargs["partialFilterExpression"] = spec.partial
        await db[spec.collection].create_index(list(spec.keys), **kwargs)


async def wait_ready(client: AsyncMongoClient[Doc], attempts: int = 30, delay: float = 0.5) -> None:
    """Wait (bounded) until the database answers ping."""
    for i in range(attempts):
        try:
            await client.admin.command("ping")
            return
        except PyMongoError as exc:
            if i == attempts - 1:
                raise
            log.info("database not ready yet", extra={"error": str(exc), "attempt": i + 1})
            await asyncio.sleep(delay)


class Busy(Exception):
    """The caller's time ran out before its input could be committed; nothing of it ran
    (HTTP callers answer 503 ``busy``: under overload a fast refusal beats a reply after the
    client gave up, and nothing half-done is left behind)."""


# processed-event marks: a consumer records each event it handled, in the transaction of its
# effects (``tongxin.runtime.consumer.BatchConsumer``); the ``_id`` is the consumer and the
# event's identity, so a mark is found by primary key and a second one cannot be written
PROCESSED = "processed_events"
PROCESSED_INDEXES: list[IndexSpec] = []  # the _id is the only index: each one costs a write
