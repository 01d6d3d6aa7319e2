"""Routing's own collections: cases (one per request) and joint meetings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.routing.domain.lifecycle import OPEN_STATES, Case
from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.scheduler import DEADLINE_INDEXES
from tongxin.runtime.uow import Effects

CASES = "cases"
MEETINGS = "meetings"
OPEN_BY_PLACE = "open_by_place"  # open cases per (compound, category): repeat detection
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


def place_key(compound: str, category: str) -> str:
    """The ``_id`` of a place's open-cases counter."""
    return f"{compound}|{category}"


class CaseStore:
    """The only module that touches routing's collections: typed reads, and writes as
    effects of a unit of work."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.cases = db[CASES]
        self.meetings = db[MEETINGS]
        self.open_by_place = db[OPEN_BY_PLACE]

    # — reads for a batch —

    async def load_many(self, case_ids: Sequence[str]) -> dict[str, Case]:
        """The stored cases among ``case_ids`` (one query)."""
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return {}
        return {d["_id"]: Case.from_doc(d) async for d in self.cases.find({"_id": {"$in": ids}})}

    async def open_similar_counts(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        """Open cases per (compound, category) among ``keys`` (repeat detection): one read
        of their counters by ``_id`` (a query over cases with ``$in`` makes SecantusDB scan
        every case)."""
        wanted = {place_key(c, k): (c, k) for c, k in keys}
        if not wanted:
            return {}
        cursor = self.open_by_place.find({"_id": {"$in": list(wanted)}})
        return {wanted[d["_id"]]: int(d.get("n", 0)) async for d in cursor}

    async def ensure_open_counts(self) -> int:
        """Count the open cases per place once, when the counters do not exist yet (a
        database from before them): at start-up, before anything consumes."""
        if await self.open_by_place.find_one({}) is not None:
            return 0
        if await self.cases.find_one({"status": {"$in": OPEN}}, {"_id": 1}) is None:
            return 0
        counts: dict[str, int] = {}
        async for d in self.cases.find({"status": {"$in": OPEN}}, {"compound": 1, "category": 1}):
            if d.get("compound"):
                key = place_key(d["compound"], d["category"])
                counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            await self.open_by_place.update_one({"_id": key}, {"$set": {"n": n}}, upsert=True)
        return len(counts)

    # — writes, as effects —

    def insert(self, fx: Effects, case: Case) -> None:
        """Open a case (its request's unique index refuses a second one)."""
        fx.insert(CASES, case.to_doc())

    def save(self, fx: Effects, case: Case, read_version: int) -> None:
        """Write a changed case, if nobody changed it since it was read at ``read_version``
        (else the batch is decided again)."""
        case.version = read_version + 1
        fx.replace(CASES, {"_id": case.id, "version": read_version}, case.to_doc())

    def count_open(self, fx: Effects, compound: str, category: str, delta: int) -> None:
        """A case of this place opened (+1) or left the open states (-1)."""
        fx.update(
            OPEN_BY_PLACE,
            {"_id": place_key(compound, category)},
            {"$inc": {"n": delta}},
            upsert=True,
        )

    def record_decision(self, fx: Effects, meeting_id: str, at: datetime, decision: Doc) -> None:
        """Add a decision to a meeting's minutes."""
        fx.update(
            MEETINGS,
            {"_id": meeting_id},
            {"$push": {"decisions": decision}, "$setOnInsert": {"scheduled_at": at}},
            upsert=True,
        )

    # — reads for the API and the gauges —

    async def get(self, case_id: str) -> Doc | None:
        """One case document."""
        return await self.cases.find_one({"_id": case_id})

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

    async def meeting(self, meeting_id: str) -> Doc | None:
        """A meeting's minutes."""
        return await self.meetings.find_one({"_id": meeting_id})
