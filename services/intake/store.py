"""Intake's own collections: requests, idempotency keys, id counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from tongxin.runtime.mongo import Doc, IndexSpec

REQUESTS = "requests"
IDEMPOTENCY = "idempotency_keys"
COUNTERS = "counters"

INDEXES = [
    IndexSpec(REQUESTS, [("status", 1), ("submitted_at", -1)]),
    IndexSpec(REQUESTS, [("community", 1), ("submitted_at", -1)]),
    IndexSpec(IDEMPOTENCY, [("expires_at", 1)]),
]


class RequestStore:
    """Reads and writes of intake's collections (the caller owns transactions)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.requests = db[REQUESTS]
        self.idempotency = db[IDEMPOTENCY]
        self.counters = db[COUNTERS]

    async def next_number(self, day_key: str) -> int:
        """Atomically allocate the next number of the day (unique across replicas)."""
        doc = await self.counters.find_one_and_update(
            {"_id": day_key},
            {"$inc": {"n": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return int(doc["n"])

    async def insert(self, session: AsyncClientSession, doc: Doc) -> None:
        """Store a new request."""
        await self.requests.insert_one(doc, session=session)

    async def get(self, request_id: str) -> Doc | None:
        """One request by id."""
        return await self.requests.find_one({"_id": request_id})

    async def find_idempotent(
        self, key: str, session: AsyncClientSession | None = None
    ) -> Doc | None:
        """A stored answer for an Idempotency-Key that has not expired."""
        doc = await self.idempotency.find_one({"_id": key}, session=session)
        if doc is None:
            return None
        expires = doc["expires_at"]
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return doc if expires > datetime.now(UTC) else None

    async def save_idempotent(
        self,
        session: AsyncClientSession,
        key: str,
        fingerprint: str,
        response: dict[str, Any],
        ttl_s: int,
    ) -> None:
        """Remember the answer for a key (replacing an expired one)."""
        now = datetime.now(UTC)
        await self.idempotency.replace_one(
            {"_id": key},
            {
                "_id": key,
                "fingerprint": fingerprint,
                "response": response,
                "created_at": now,
                "expires_at": now + timedelta(seconds=ttl_s),
            },
            upsert=True,
            session=session,
        )

    async def record_case_event(
        self,
        session: AsyncClientSession,
        request_id: str,
        status: str,
        entry: Doc,
        fields: Doc | None = None,
    ) -> None:
        """Move a request's status and append to its resident-facing timeline."""
        await self.requests.update_one(
            {"_id": request_id},
            {"$set": {"status": status, **(fields or {})}, "$push": {"timeline": entry}},
            session=session,
        )
