"""Intake's own collections: requests, idempotency keys, id counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from tongxin.runtime.mongo import Doc, IndexSpec, insert_at_end

REQUESTS = "requests"
IDEMPOTENCY = "idempotency_keys"
COUNTERS = "counters"
ID_BLOCK = 32  # request numbers taken from the day's counter at a time

INDEXES = [
    IndexSpec(REQUESTS, [("submitted_at", -1), ("_id", -1)], name="newest_first"),
    IndexSpec(REQUESTS, [("status", 1), ("submitted_at", -1)]),
    IndexSpec(REQUESTS, [("community", 1), ("submitted_at", -1)]),
    IndexSpec(REQUESTS, [("compound", 1), ("category", 1), ("submitted_at", -1)]),
    IndexSpec(REQUESTS, [("external.source", 1), ("external.id", 1)]),
    IndexSpec(IDEMPOTENCY, [("expires_at", 1)]),
]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class RequestStore:
    """Reads and writes of intake's collections (the caller owns transactions)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.requests = db[REQUESTS]
        self.idempotency = db[IDEMPOTENCY]
        self.counters = db[COUNTERS]
        self._blocks: dict[str, list[int]] = {}  # day key -> [last handed out, block end]
        self._block_lock = asyncio.Lock()
        # the last failed block allocation (when, what): callers that queued on the lock
        # while it failed get the same error at once instead of one database timeout each
        self._block_failure: tuple[float, PyMongoError] | None = None

    async def next_number(self, day_key: str) -> int:
        """Allocate the next number of the day (unique across replicas).

        Numbers are taken from the day's counter document in blocks of ``ID_BLOCK``, so
        the counter costs one round trip per block rather than per request. Each replica
        hands out its own block: numbers stay unique, but are not dense (a restart leaves
        the rest of its block unused) and not strictly in submission order across replicas.
        """
        block = self._blocks.get(day_key)
        if block is not None and block[0] < block[1]:
            block[0] += 1
            return block[0]
        queued_at = time.monotonic()
        async with self._block_lock:
            failure = self._block_failure
            if failure is not None and failure[0] >= queued_at:
                raise failure[1]  # e.g. the database is down: 503 now, not after a queue of waits
            block = self._blocks.get(day_key)
            if block is None or block[0] >= block[1]:
                try:
                    end = await self._take_block(day_key, ID_BLOCK)
                except PyMongoError as exc:
                    self._block_failure = (time.monotonic(), exc)
                    raise
                self._blocks = {day_key: [end - ID_BLOCK, end]}  # yesterday's block is done
                block = self._blocks[day_key]
            block[0] += 1
            return block[0]

    async def _take_block(self, day_key: str, size: int) -> int:
        """Raise the day's counter by ``size``; the new value (the block's last number).

        Two first allocations of a day race on the upsert: the loser sees a duplicate key
        (or, on some servers, no document) and simply increments again.
        """
        for _ in range(20):
            try:
                doc = await self.counters.find_one_and_update(
                    {"_id": day_key},
                    {"$inc": {"n": size}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            if doc is not None:
                return int(doc["n"])
        raise RuntimeError(f"could not allocate a number for {day_key}")

    async def insert(self, session: AsyncClientSession, doc: Doc) -> None:
        """Store a new request (at the end of the transaction, with the other requests of a
        grouped commit in one ``insert_many``: nothing reads it back before the commit, and a
        duplicate external id still fails the caller's own transaction)."""
        await insert_at_end(session, self.requests, doc)

    async def get(self, request_id: str, session: AsyncClientSession | None = None) -> Doc | None:
        """One request by id."""
        return await self.requests.find_one({"_id": request_id}, session=session)

    async def find_external(self, source: str, event_id: str) -> Doc | None:
        """The request made from another platform's event (source, id), if any."""
        return await self.requests.find_one({"external.source": source, "external.id": event_id})

    async def find_idempotent(
        self, key: str, session: AsyncClientSession | None = None
    ) -> Doc | None:
        """A stored answer for an Idempotency-Key that has not expired."""
        doc = await self.idempotency.find_one({"_id": key}, session=session)
        if doc is None:
            return None
        return doc if _aware(doc["expires_at"]) > datetime.now(UTC) else None

    async def save_idempotent(
        self,
        session: AsyncClientSession,
        key: str,
        fingerprint: str,
        response: dict[str, Any],
        ttl_s: int,
    ) -> None:
        """Remember the answer for a key. A concurrent first use of the same key collides
        on ``_id`` (write conflict or duplicate key), so only one request is stored."""
        now = datetime.now(UTC)
        doc = {
            "_id": key,
            "fingerprint": fingerprint,
            "response": response,
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl_s),
        }
        expired = await self.idempotency.find_one({"_id": key}, session=session)
        if expired is None:
            await self.idempotency.insert_one(doc, session=session)
        else:
            await self.idempotency.replace_one(
                {"_id": key, "expires_at": expired["expires_at"]}, doc, session=session
            )

    async def update(
        self,
        session: AsyncClientSession,
        flt: Doc,
        set_fields: Doc,
        push: Doc | None = None,
    ) -> bool:
        """Conditionally update a request (bumping its revision); False if ``flt`` missed."""
        update: Doc = {"$set": set_fields, "$inc": {"rev": 1}}
        if push:
            update["$push"] = push
        res = await self.requests.update_one(flt, update, session=session)
        return res.modified_count == 1

    async def open_similar(
        self,
        compound: str,
        category: str,
        since: datetime,
        statuses: Sequence[str],
        limit: int = 50,
    ) -> list[Doc]:
        """The newest ``limit`` open requests of a compound and category since ``since``."""
        cursor = (
            self.requests.find(
                {
                    "compound": compound,
                    "category": category,
                    "submitted_at": {"$gte": since},
                    "status": {"$in": list(statuses)},
                },
                {"title": 1, "description": 1, "submitted_at": 1, "duplicate_of": 1},
            )
            .sort("submitted_at", DESCENDING)
            .limit(limit)
        )
        return [d async for d in cursor]

    async def page(self, flt: Doc, limit: int) -> list[Doc]:
        """Requests matching ``flt``, newest first (``_id`` breaks ties)."""
        cursor = (
            self.requests.find(flt, {"tracking_hash": 0, "timeline": 0})
            .sort([("submitted_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [d async for d in cursor]
