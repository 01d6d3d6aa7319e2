"""Routing's own collections: cases (one per request)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from tongxin.runtime.mongo import Doc, IndexSpec

CASES = "cases"
OPEN_STATES = ["open", "acknowledged", "in_progress"]

INDEXES = [
    # one case per request, whatever happens to the consumer
    IndexSpec(CASES, [("request_id", 1)], unique=True),
    IndexSpec(CASES, [("compound", 1), ("category", 1), ("status", 1)]),
    IndexSpec(CASES, [("units", 1), ("opened_at", -1)]),
]


class CaseStore:
    """Reads and writes of routing's collections (the caller owns transactions)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.cases = db[CASES]

    async def count_open_similar(self, compound: str | None, category: str) -> int:
        """Open cases of the same compound and category (repeat detection)."""
        if not compound:
            return 0
        return await self.cases.count_documents(
            {"compound": compound, "category": category, "status": {"$in": OPEN_STATES}}
        )

    async def insert(self, session: AsyncClientSession, doc: Doc) -> None:
        """Open a case."""
        await self.cases.insert_one(doc, session=session)

    async def get(self, case_id: str) -> Doc | None:
        """One case."""
        return await self.cases.find_one({"_id": case_id})

    async def list(self, filt: dict[str, Any], limit: int) -> list[Doc]:
        """Cases matching ``filt``, newest first."""
        cursor = self.cases.find(filt).sort("opened_at", -1).limit(limit)
        return [d async for d in cursor]
