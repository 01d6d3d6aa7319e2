"""MongoDB access through PyMongo's async API (``AsyncMongoClient``, Motor's successor)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")


def make_client(uri: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[Doc]:
    """Build the client (no I/O until first use); call only from a lifespan."""
    return AsyncMongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
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


async def in_transaction(
    client: AsyncMongoClient[Doc], fn: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run ``fn`` in a transaction, retried on transient errors (write conflicts)."""
    async with client.start_session() as session:
        return await session.with_transaction(fn)


class AlreadyHandled(Exception):
    """The event was already handled by this consumer: the transaction is a no-op."""


PROCESSED = "processed_events"
PROCESSED_INDEXES = [IndexSpec(PROCESSED, [("consumer", 1), ("event_id", 1)], unique=True)]


async def record_event_once(
    db: AsyncDatabase[Doc], session: AsyncClientSession, consumer: str, event_id: str
) -> None:
    """Record ``event_id`` under a unique index inside the caller's transaction.

    Raises :class:`AlreadyHandled` when it was recorded before, which aborts the
    transaction so a redelivered event changes nothing.
    """
    try:
        await db[PROCESSED].insert_one(
            {"consumer": consumer, "event_id": event_id}, session=session
        )
    except DuplicateKeyError as exc:
        raise AlreadyHandled(event_id) from exc


async def handle_once(
    client: AsyncMongoClient[Doc],
    db: AsyncDatabase[Doc],
    consumer: str,
    event_id: str,
    fn: Callable[[AsyncClientSession], Awaitable[None]],
) -> bool:
    """Apply ``fn`` and record the event id atomically; False if it was a duplicate."""

    async def txn(session: AsyncClientSession) -> None:
        await record_event_once(db, session, consumer, event_id)
        await fn(session)

    try:
        await in_transaction(client, txn)
    except AlreadyHandled:
        return False
    return True
