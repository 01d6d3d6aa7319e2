"""Volunteer's own collections: volunteers, squads, brigade, tasks, hours, care recipients
and visits (plus the kernel's outbox, processed events and deadlines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from services.volunteer.domain.availability import Window
from services.volunteer.domain.care import VisitStatus
from services.volunteer.domain.matching import Candidate
from services.volunteer.domain.tasks import OPEN_STATES
from tongxin.contracts.enums import Skill
from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.scheduler import DEADLINE_INDEXES

VOLUNTEERS = "volunteers"
SQUADS = "squads"
BRIGADE = "brigade"
TASKS = "tasks"
HOURS = "service_hours"
RECIPIENTS = "care_recipients"
VISITS = "care_visits"
COUNTERS = "counters"
OPEN = [s.value for s in OPEN_STATES]

INDEXES = [
    *DEADLINE_INDEXES,
    IndexSpec(VOLUNTEERS, [("skills", 1), ("active", 1)]),
    IndexSpec(VOLUNTEERS, [("community", 1), ("compound", 1)]),
    IndexSpec(SQUADS, [("skill", 1)]),
    # one task per case
    IndexSpec(TASKS, [("case_id", 1)], unique=True),
    IndexSpec(TASKS, [("volunteer_id", 1), ("status", 1)]),
    IndexSpec(TASKS, [("request_id", 1)]),
    IndexSpec(HOURS, [("volunteer_id", 1), ("at", -1)]),
    IndexSpec(HOURS, [("skill", 1), ("at", -1)]),
    IndexSpec(RECIPIENTS, [("community", 1), ("active", 1)]),
    IndexSpec(VISITS, [("recipient_id", 1), ("seq", 1)], unique=True),
    IndexSpec(VISITS, [("status", 1), ("deadline", 1)]),
    IndexSpec(VISITS, [("volunteer_id", 1), ("status", 1)]),
]


def windows_of(doc: Doc) -> tuple[Window, ...]:
    """A volunteer document's availability windows as domain values."""
    out: list[Window] = []
    for w in doc.get("availability") or []:
        h1, m1 = (int(x) for x in w["start"].split(":"))
        h2, m2 = (int(x) for x in w["end"].split(":"))
        out.append(Window(int(w["day"]), h1 * 60 + m1, h2 * 60 + m2))
    return tuple(out)


class VolunteerStore:
    """Reads and writes of volunteer's collections (the caller owns transactions)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.volunteers = db[VOLUNTEERS]
        self.squads = db[SQUADS]
        self.brigade = db[BRIGADE]
        self.tasks = db[TASKS]
        self.hours = db[HOURS]
        self.recipients = db[RECIPIENTS]
        self.visits = db[VISITS]
        self.counters = db[COUNTERS]

    async def next_id(self, kind: str, prefix: str) -> str:
        """A fresh readable id (``vol:0009``) from a counter."""
        doc = await self.counters.find_one_and_update(
            {"_id": kind}, {"$inc": {"n": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert doc is not None
        return f"{prefix}{int(doc['n']):04d}"

    # --- seed --------------------------------------------------------------------------------

    async def seed(self, raw: dict[str, Any]) -> int:
        """Insert the seed volunteers, squads and brigade not there yet (never overwrites)."""
        now = now_utc()
        added = 0
        for coll, items in (
            (self.volunteers, raw.get("volunteers", [])),
            (self.squads, raw.get("squads", [])),
        ):
            ops = [
                UpdateOne(
                    {"_id": v["id"]},
                    {
                        "$setOnInsert": {
                            **{k: x for k, x in v.items() if k != "id"},
                            **(
                                {"active": v.get("active", True)} if coll is self.volunteers else {}
                            ),
                            "created_at": now,
                        }
                    },
                    upsert=True,
                )
                for v in items
            ]
            if ops:
                added += (await coll.bulk_write(ops, ordered=False)).upserted_count
        if raw.get("brigade"):
            await self.brigade.update_one(
                {"_id": "brigade"}, {"$setOnInsert": raw["brigade"]}, upsert=True
            )
        return added

    # --- registry ----------------------------------------------------------------------------

    async def get_volunteer(self, vid: str) -> Doc | None:
        """One volunteer."""
        return await self.volunteers.find_one({"_id": vid})

    async def existing_volunteers(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are registered and active."""
        return {
            d["_id"]
            async for d in self.volunteers.find({"_id": {"$in": ids}, "active": True}, {"_id": 1})
        }

    async def list_volunteers(
        self, filt: dict[str, Any], limit: int, after: str | None = None
    ) -> list[Doc]:
        """Volunteers matching ``filt`` by id, after the cursor ``after``."""
        if after:
            filt = {**filt, "_id": {"$gt": after}}
        return [d async for d in self.volunteers.find(filt).sort("_id", 1).limit(limit)]

    async def list_squads(self) -> list[Doc]:
        """Every squad."""
        return [d async for d in self.squads.find({}).sort("_id", 1)]

    async def squad_sizes(self) -> dict[str, int]:
        """Active volunteers per skill."""
        out: dict[str, int] = {}
        async for row in await self.volunteers.aggregate(
            [
                {"$match": {"active": True}},
                {"$unwind": "$skills"},
                {"$group": {"_id": "$skills", "n": {"$sum": 1}}},
            ]
        ):
            out[row["_id"]] = row["n"]
        return out

    # --- matching ----------------------------------------------------------------------------

    async def candidates(
        self, skills: list[str], now: datetime, fairness_days: int = 30
    ) -> list[Candidate]:
        """Active volunteers with any of ``skills``, with current load and recent work."""
        vols = [d async for d in self.volunteers.find({"skills": {"$in": skills}, "active": True})]
        ids = [v["_id"] for v in vols]
        load = await self.open_counts(ids)
        recent = await self.recent_work(ids, now - timedelta(days=fairness_days))
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
                open_tasks=load.get(v["_id"], 0),
                recent_tasks=recent.get(v["_id"], (0, 0.0))[0] + load.get(v["_id"], 0),
                recent_hours=recent.get(v["_id"], (0, 0.0))[1],
                windows=windows_of(v),
                active=bool(v.get("active", True)),
            )
            for v in vols
        ]

    async def open_counts(self, ids: list[str] | None = None) -> dict[str, int]:
        """Open (offered or accepted) tasks per volunteer."""
        match: Doc = {"status": {"$in": OPEN}}
        if ids is not None:
            match["volunteer_id"] = {"$in": ids}
        out: dict[str, int] = {}
        async for row in await self.tasks.aggregate(
            [{"$match": match}, {"$group": {"_id": "$volunteer_id", "n": {"$sum": 1}}}]
        ):
            out[row["_id"]] = row["n"]
        return out

    async def recent_work(self, ids: list[str], since: datetime) -> dict[str, tuple[int, float]]:
        """(completed tasks and visits, hours) per volunteer since ``since``."""
        out: dict[str, tuple[int, float]] = {}
        async for row in await self.hours.aggregate(
            [
                {"$match": {"volunteer_id": {"$in": ids}, "at": {"$gte": since}}},
                {"$group": {"_id": "$volunteer_id", "n": {"$sum": 1}, "h": {"$sum": "$hours"}}},
            ]
        ):
            out[row["_id"]] = (int(row["n"]), float(row["h"]))
        return out

    # --- tasks -------------------------------------------------------------------------------

    async def insert_task(self, session: AsyncClientSession, doc: Doc) -> None:
        """Record a task (offered or unmatched)."""
        await self.tasks.insert_one(doc, session=session)

    async def get_task(self, task_id: str, session: AsyncClientSession | None = None) -> Doc | None:
        """One task."""
        return await self.tasks.find_one({"_id": task_id}, session=session)

    async def task_for_case(self, case_id: str) -> Doc | None:
        """The task of a case, if one was opened."""
        return await self.tasks.find_one({"case_id": case_id})

    async def update_task(self, session: AsyncClientSession, guard: Doc, update: Doc) -> bool:
        """Conditional update (optimistic: the guard pins status and attempt)."""
        res = await self.tasks.update_one(guard, update, session=session)
        return res.modified_count == 1

    async def list_tasks(self, filt: dict[str, Any], limit: int) -> list[Doc]:
        """Tasks matching ``filt``, newest first."""
        return [d async for d in self.tasks.find(filt).sort("created_at", -1).limit(limit)]

    # --- hours -------------------------------------------------------------------------------

    async def add_hours(self, session: AsyncClientSession, entry: Doc) -> None:
        """Record hours of one completed task or visit (``_id`` is the task/visit id)."""
        await self.hours.insert_one(entry, session=session)

    async def hours_of(self, vid: str, since: datetime) -> Doc:
        """Totals of one volunteer: all time, since ``since``, by skill, recent entries."""
        total = {"hours": 0.0, "count": 0}
        recent = {"hours": 0.0, "count": 0}
        by_skill: dict[str, float] = {}
        async for e in self.hours.find({"volunteer_id": vid}):
            total["hours"] += e["hours"]
            total["count"] += 1
            if e["at"] >= since:
                recent["hours"] += e["hours"]
                recent["count"] += 1
            by_skill[e.get("skill") or "other"] = (
                by_skill.get(e.get("skill") or "other", 0.0) + e["hours"]
            )
        entries = [e async for e in self.hours.find({"volunteer_id": vid}).sort("at", -1).limit(20)]
        return {"total": total, "recent": recent, "by_skill": by_skill, "entries": entries}

    async def hours_by_skill(self, since: datetime | None) -> dict[str, tuple[float, int, int]]:
        """(hours, entries, distinct volunteers) per skill."""
        match: Doc = {"at": {"$gte": since}} if since else {}
        out: dict[str, tuple[float, int, int]] = {}
        async for row in await self.hours.aggregate(
            [
                {"$match": match},
                {
                    "$group": {
                        "_id": "$skill",
                        "h": {"$sum": "$hours"},
                        "n": {"$sum": 1},
                        "v": {"$addToSet": "$volunteer_id"},
                    }
                },
            ]
        ):
            out[str(row["_id"])] = (float(row["h"]), int(row["n"]), len(row["v"]))
        return out

    # --- care --------------------------------------------------------------------------------

    async def get_recipient(self, rid: str) -> Doc | None:
        """One care recipient."""
        return await self.recipients.find_one({"_id": rid})

    async def get_visit(self, visit_id: str) -> Doc | None:
        """One care visit."""
        return await self.visits.find_one({"_id": visit_id})

    async def overdue_visits(self, community: str | None) -> list[Doc]:
        """Visits marked overdue and not yet made, oldest first."""
        filt: Doc = {"status": VisitStatus.OVERDUE.value}
        if community:
            filt["community"] = community
        return [d async for d in self.visits.find(filt).sort("deadline", 1).limit(500)]

    async def utilisation(self) -> tuple[int, int, int]:
        """(active volunteers, open tasks, total capacity)."""
        active = 0
        capacity = 0
        async for v in self.volunteers.find({"active": True}, {"max_tasks": 1}):
            active += 1
            capacity += int(v.get("max_tasks", 3))
        open_tasks = await self.tasks.count_documents({"status": {"$in": OPEN}})
        return active, open_tasks, capacity

    async def count_overdue(self) -> int:
        """Visits currently overdue."""
        return await self.visits.count_documents({"status": VisitStatus.OVERDUE.value})


def now_utc() -> datetime:
    """The current time (UTC, aware)."""
    return datetime.now(UTC)
