"""Routing's own collections: cases (one per request) and joint meetings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.routing.domain.lifecycle import OPEN_STATES, Case
from tongxin.runtime.mongo import Doc, IndexSpec, insert_at_end
from tongxin.runtime.scheduler import DEADLINE_INDEXES

CASES = "cases"
MEETINGS = "meetings"
OPEN = [s.value for s in OPEN_STATES]

INDEXES = [
    # one case per request, whatever happens to the consumer
    IndexSpec(CASES, [("request_id", 1)], unique=True),
    IndexSpec(CASES, [("compound", 1), ("category", 1), ("status", 1)]),
    IndexSpec(CASES, [("units", 1), ("opened_at", -1)]),
    IndexSpec(CASES, [("opened_at", -1), ("_id", -1)]),
    IndexSpec(CASES, [("status", 1), ("deliberation", 1)]),
    *DEADLINE_INDEXES,
]


class StaleCase(Exception):
    """The case changed between read and write (another replica or request); retry."""


class CaseStore:
    """Reads and writes of routing's collections (the caller owns transactions)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.cases = db[CASES]
        self.meetings = db[MEETINGS]

    async def count_open_similar(self, compound: str | None, category: str) -> int:
        """Open cases of the same compound and category (repeat detection)."""
        if not compound:
            return 0
        return await self.cases.count_documents(
            {"compound": compound, "category": category, "status": {"$in": OPEN}}
        )

    async def insert(self, session: AsyncClientSession, case: Case) -> None:
        """Open a case (at the end of the transaction, with a grouped commit's other new
        cases in one ``insert_many``: nothing reads it back before the commit)."""
        await insert_at_end(session, self.cases, case.to_doc())

    async def load(self, session: AsyncClientSession | None, case_id: str) -> Case | None:
        """One case as a domain object (inside the caller's transaction when given)."""
        doc = await self.cases.find_one({"_id": case_id}, session=session)
        return None if doc is None else Case.from_doc(doc)

    async def save(self, session: AsyncClientSession, case: Case) -> None:
        """Write a changed case if nobody else changed it since it was read."""
        expected = case.version
        case.version += 1
        res = await self.cases.replace_one(
            {"_id": case.id, "version": expected}, case.to_doc(), session=session
        )
        if res.matched_count != 1:
            case.version = expected
            raise StaleCase(case.id)

    async def get(self, case_id: str) -> Doc | None:
        """One case document."""
        return await self.cases.find_one({"_id": case_id})

    async def by_request(self, request_id: str) -> Doc | None:
        """The case of a request."""
        return await self.cases.find_one({"request_id": request_id}, {"_id": 1})

    async def page(
        self, filt: dict[str, Any], limit: int, after: tuple[datetime, str] | None = None
    ) -> list[Doc]:
        """Cases matching ``filt``, newest first, after a cursor position."""
        q = dict(filt)
        if after is not None:
            at, cid = after
            q["$or"] = [{"opened_at": {"$lt": at}}, {"opened_at": at, "_id": {"$lt": cid}}]
        cursor = self.cases.find(q).sort([("opened_at", -1), ("_id", -1)]).limit(limit)
        return [d async for d in cursor]

    async def agenda_candidates(self) -> list[Case]:
        """Open cases that may be on a joint meeting's agenda."""
        cursor = self.cases.find(
            {
                "status": {"$in": OPEN},
                "$or": [{"deliberation": True}, {"level": {"$ne": "community"}}],
            }
        ).sort("opened_at", 1)
        return [Case.from_doc(d) async for d in cursor]

    async def opened_between(self, since: datetime | None, until: datetime | None) -> list[Case]:
        """Cases opened in a window (for KPIs)."""
        q: dict[str, Any] = {}
        if since or until:
            q["opened_at"] = {
                **({"$gte": since} if since else {}),
                **({"$lt": until} if until else {}),
            }
        return [Case.from_doc(d) async for d in self.cases.find(q)]

    async def open_counts(self) -> dict[tuple[str, str], int]:
        """Open cases by (tier, unit) for the open-cases gauge."""
        counts: dict[tuple[str, str], int] = {}
        async for d in self.cases.find({"status": {"$in": OPEN}}, {"tier": 1, "units": 1}):
            for unit in d.get("units", []):
                key = (d["tier"], unit)
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def record_decision(
        self, session: AsyncClientSession, meeting_id: str, at: datetime, decision: Doc
    ) -> None:
        """Add a decision to a meeting's minutes."""
        await self.meetings.update_one(
            {"_id": meeting_id},
            {"$push": {"decisions": decision}, "$setOnInsert": {"scheduled_at": at}},
            upsert=True,
            session=session,
        )

    async def meeting(self, meeting_id: str) -> Doc | None:
        """A meeting's minutes."""
        return await self.meetings.find_one({"_id": meeting_id})
