"""Volunteer's own collections: volunteers and tasks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.volunteer.domain.matching import Candidate
from tongxin.contracts.enums import Skill
from tongxin.runtime.mongo import Doc, IndexSpec

VOLUNTEERS = "volunteers"
TASKS = "tasks"
OPEN_TASK_STATES = ["offered", "accepted"]

INDEXES = [
    IndexSpec(VOLUNTEERS, [("skills", 1), ("active", 1)]),
    # one task per case
    IndexSpec(TASKS, [("case_id", 1)], unique=True),
    IndexSpec(TASKS, [("volunteer_id", 1), ("status", 1)]),
]


class VolunteerStore:
    """Reads and writes of volunteer's collections (the caller owns transactions)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.volunteers = db[VOLUNTEERS]
        self.tasks = db[TASKS]

    async def seed(self, volunteers: list[dict[str, Any]]) -> int:
        """Insert the seed volunteers that are not there yet (never overwrites edits)."""
        ops = [
            UpdateOne(
                {"_id": v["id"]},
                {
                    "$setOnInsert": {
                        **{k: x for k, x in v.items() if k != "id"},
                        "active": v.get("active", True),
                    }
                },
                upsert=True,
            )
            for v in volunteers
        ]
        if not ops:
            return 0
        result = await self.volunteers.bulk_write(ops, ordered=False)
        return result.upserted_count

    async def candidates(self, skills: list[str]) -> list[Candidate]:
        """Active volunteers with any of ``skills``, with their current and recent load."""
        since = datetime.now(UTC) - timedelta(days=30)
        vols = [d async for d in self.volunteers.find({"skills": {"$in": skills}, "active": True})]
        ids = [v["_id"] for v in vols]
        open_counts: dict[str, int] = {}
        recent_counts: dict[str, int] = {}
        async for row in await self.tasks.aggregate(
            [
                {"$match": {"volunteer_id": {"$in": ids}}},
                {
                    "$group": {
                        "_id": "$volunteer_id",
                        "open": {"$sum": {"$cond": [{"$in": ["$status", OPEN_TASK_STATES]}, 1, 0]}},
                        "recent": {"$sum": {"$cond": [{"$gte": ["$offered_at", since]}, 1, 0]}},
                    }
                },
            ]
        ):
            open_counts[row["_id"]] = row["open"]
            recent_counts[row["_id"]] = row["recent"]
        return [
            Candidate(
                id=v["_id"],
                name=v["name"],
                skills=frozenset(Skill(s) for s in v.get("skills", [])),
                community=v.get("community"),
                compound=v.get("compound"),
                lat=v.get("lat"),
                lng=v.get("lng"),
                max_tasks=int(v.get("max_tasks", 3)),
                open_tasks=open_counts.get(v["_id"], 0),
                recent_tasks=recent_counts.get(v["_id"], 0),
                active=bool(v.get("active", True)),
            )
            for v in vols
        ]

    async def insert_task(self, session: AsyncClientSession, doc: Doc) -> None:
        """Record a task (offered or unmatched)."""
        await self.tasks.insert_one(doc, session=session)

    async def list_volunteers(self, filt: dict[str, Any], limit: int) -> list[Doc]:
        """Volunteers matching ``filt``."""
        return [d async for d in self.volunteers.find(filt).sort("_id", 1).limit(limit)]

    async def list_tasks(self, filt: dict[str, Any], limit: int) -> list[Doc]:
        """Tasks matching ``filt``, newest first."""
        return [d async for d in self.tasks.find(filt).sort("offered_at", -1).limit(limit)]
