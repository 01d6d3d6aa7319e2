"""Notify's own collections: deliveries (one per event, recipient, channel) and contacts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tongxin.runtime.mongo import Doc, IndexSpec

DELIVERIES = "deliveries"
CONTACTS = "contacts"

INDEXES = [
    # at most once per (event, recipient, channel)
    IndexSpec(DELIVERIES, [("event_id", 1), ("recipient", 1), ("channel", 1)], unique=True),
    IndexSpec(DELIVERIES, [("request_id", 1), ("created_at", 1)]),
]


def delivery_id(event_id: str, recipient: str, channel: str) -> str:
    """Stable id of one delivery."""
    return f"{event_id}|{recipient}|{channel}"


class NotifyStore:
    """Reads and writes of notify's collections."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.deliveries = db[DELIVERIES]
        self.contacts = db[CONTACTS]

    async def claim(self, doc: Doc) -> bool:
        """Claim a delivery before sending. False when it was sent, or may have been."""
        try:
            await self.deliveries.insert_one({**doc, "status": "sending", "attempts": 1})
            return True
        except DuplicateKeyError:
            pass
        # only a delivery that failed for sure may be tried again
        res = await self.deliveries.update_one(
            {"_id": doc["_id"], "status": "failed"},
            {"$set": {"status": "sending"}, "$inc": {"attempts": 1}},
        )
        return res.modified_count == 1

    async def mark_sent(self, session: AsyncClientSession, did: str) -> None:
        """The delivery went through."""
        await self.deliveries.update_one(
            {"_id": did},
            {"$set": {"status": "sent", "sent_at": datetime.now(UTC)}},
            session=session,
        )

    async def mark_failed(self, did: str, error: str) -> None:
        """The delivery failed for sure (it may be tried again)."""
        await self.deliveries.update_one(
            {"_id": did}, {"$set": {"status": "failed", "error": error[:500]}}
        )

    async def save_contact(self, request_id: str, submitter: dict[str, Any]) -> None:
        """Keep the submitter's contact for later messages about the request."""
        await self.contacts.update_one(
            {"_id": request_id},
            {"$set": {"submitter": submitter, "updated_at": datetime.now(UTC)}},
            upsert=True,
        )

    async def list(self, filt: dict[str, Any], limit: int) -> list[Doc]:
        """Deliveries matching ``filt``, oldest first."""
        return [d async for d in self.deliveries.find(filt).sort("created_at", 1).limit(limit)]
