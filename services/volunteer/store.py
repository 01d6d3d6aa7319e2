"""Volunteer's own collections: volunteers, squads, brigade, tasks, hours (and each
volunteer's recent ones), care recipients and visits, counters (plus the kernel's outbox,
processed events and deadlines).

The only module that touches them: typed records in and out. Reads for a batch take every
id the batch needs at once, in shapes SecantusDB serves from an index: its planner scans
the whole collection for a ``$in`` on any field but ``_id`` (unless it follows equalities
on an index's leading fields, or is alone on an index's first field) and for a top-level
``$or``, a cost that grows with every task, visit and hour ever recorded. Writes are
effects of a unit of work — a changed record is replaced on the version it was read at
(anyone in between: the batch is decided again).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from services.volunteer.domain.care import Recipient, Visit, VisitStatus
from services.volunteer.domain.tasks import OPEN_STATES, Task, TaskStatus
from services.volunteer.domain.volunteers import (
    BRIGADE_ID,
    Brigade,
    ServiceHours,
    Squad,
    Volunteer,
)
from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.scheduler import DEADLINE_INDEXES
from tongxin.runtime.uow import Effects

VOLUNTEERS = "volunteers"
SQUADS = "squads"
BRIGADE = "brigade"
TASKS = "tasks"
HOURS = "service_hours"
# per volunteer (_id): their hours entries of the fairness window, kept with each entry
RECENT_HOURS = "recent_hours"
# the counter saying how many days of entries recent_hours holds (set at start-up)
RECENT_HOURS_DAYS = "recent_hours_days"
RECIPIENTS = "care_recipients"
VISITS = "care_visits"
COUNTERS = "counters"
OPEN = [s.value for s in OPEN_STATES]

INDEXES = [
    *DEADLINE_INDEXES,
    IndexSpec(VOLUNTEERS, [("skills", 1), ("active", 1)]),
    # a batch's candidates: active, with any of its skills
    IndexSpec(VOLUNTEERS, [("active", 1), ("skills", 1)]),
    IndexSpec(VOLUNTEERS, [("community", 1), ("compound", 1)]),
    IndexSpec(SQUADS, [("skill", 1)]),
    # one task per case
    IndexSpec(TASKS, [("case_id", 1)], unique=True),
    IndexSpec(TASKS, [("volunteer_id", 1), ("status", 1)]),
    # the candidates' open tasks, one open status at a time; the open-tasks gauge
    IndexSpec(TASKS, [("status", 1), ("volunteer_id", 1)]),
    IndexSpec(TASKS, [("request_id", 1)]),
    IndexSpec(HOURS, [("volunteer_id", 1), ("at", -1)]),
    IndexSpec(HOURS, [("skill", 1), ("at", -1)]),
    IndexSpec(RECIPIENTS, [("community", 1), ("active", 1)]),
    IndexSpec(VISITS, [("recipient_id", 1), ("seq", 1)], unique=True),
    IndexSpec(VISITS, [("status", 1), ("deadline", 1)]),
    IndexSpec(VISITS, [("volunteer_id", 1), ("status", 1)]),
]


def now_utc() -> datetime:
    """The current time (UTC, aware)."""
    return datetime.now(UTC)


def _read_at(version: int) -> Any:
    """The condition on the version a record was read at. Version 0 also matches a
    document written before versions were kept (it has none)."""
    return version if version else {"$in": [0, None]}


@dataclass(frozen=True, slots=True)
class HoursSummary:
    """One volunteer's hours: all time, since a date, by skill, the latest entries."""

    total_hours: float
    completed: int
    recent_hours: float
    recent_completed: int
    by_skill: dict[str, float]
    entries: list[ServiceHours]


@dataclass(frozen=True, slots=True)
class SkillHours:
    """Hours of one skill: total, entries, distinct volunteers."""

    hours: float
    completed: int
    volunteers: int


class VolunteerStore:
    """Reads and writes of volunteer's collections."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.volunteers = db[VOLUNTEERS]
        self.squads = db[SQUADS]
        self.brigade = db[BRIGADE]
        self.tasks = db[TASKS]
        self.hours = db[HOURS]
        self.recent_hours = db[RECENT_HOURS]
        self.recipients = db[RECIPIENTS]
        self.visits = db[VISITS]
        self.counters = db[COUNTERS]

    # --- seed (at start-up, before anything else writes) ---------------------------------

    async def seed(
        self, volunteers: Sequence[Volunteer], squads: Sequence[Squad], brigade: Brigade | None
    ) -> int:
        """Insert the seed records not there yet (never overwrites); how many were new."""
        added = 0
        for coll, docs in (
            (self.volunteers, [v.to_doc() for v in volunteers]),
            (self.squads, [s.to_doc() for s in squads]),
        ):
            ops = [UpdateOne({"_id": d["_id"]}, {"$setOnInsert": d}, upsert=True) for d in docs]
            if ops:
                added += (await coll.bulk_write(ops, ordered=False)).upserted_count
        if brigade is not None:
            doc = brigade.to_doc()
            await self.brigade.update_one({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
        return added

    # --- reads for a batch -----------------------------------------------------------------

    async def tasks_by_id(self, ids: Iterable[str]) -> dict[str, Task]:
        """The stored tasks among ``ids`` (one query)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return {d["_id"]: Task.from_doc(d) async for d in self.tasks.find({"_id": {"$in": wanted}})}

    async def offered_to(self, volunteer_ids: Sequence[str]) -> list[Task]:
        """The tasks whose pending offer is to any of ``volunteer_ids`` (one query)."""
        if not volunteer_ids:
            return []
        flt = open_tasks_filter(TaskStatus.OFFERED.value, sorted(set(volunteer_ids)))
        return [Task.from_doc(d) async for d in self.tasks.find(flt)]

    async def volunteers_by_id(self, ids: Iterable[str]) -> dict[str, Volunteer]:
        """The registered volunteers among ``ids``, active or not (one query)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        cursor = self.volunteers.find({"_id": {"$in": wanted}})
        return {d["_id"]: Volunteer.from_doc(d) async for d in cursor}

    async def active_with_skills(self, skills: Iterable[str]) -> list[Volunteer]:
        """Active volunteers with any of ``skills`` (one query)."""
        wanted = sorted(set(skills))
        if not wanted:
            return []
        cursor = self.volunteers.find(candidates_filter(wanted))
        return [Volunteer.from_doc(d) async for d in cursor]

    async def open_counts(self, ids: Sequence[str]) -> dict[str, int]:
        """Open (offered or accepted) tasks per volunteer among ``ids``: one query per open
        status, each served by the ``status_1_volunteer_id_1`` index (a ``$in`` on both
        fields makes SecantusDB scan every task)."""
        wanted = sorted(set(ids))
        out: dict[str, int] = {}
        if not wanted:
            return out
        found = await asyncio.gather(
            *(
                self.tasks.find(open_tasks_filter(status, wanted), {"volunteer_id": 1}).to_list()
                for status in OPEN
            )
        )
        for docs in found:
            for d in docs:
                out[d["volunteer_id"]] = out.get(d["volunteer_id"], 0) + 1
        return out

    async def recent_work(
        self, ids: Sequence[str], since: datetime
    ) -> dict[str, tuple[int, float]]:
        """(completed tasks and visits, hours) per volunteer among ``ids`` since ``since``:
        one read of their ``recent_hours`` by ``_id`` (the hours themselves, by volunteer
        and time, take one query per volunteer — a ``$in`` next to the range makes
        SecantusDB scan every entry ever recorded)."""
        wanted = sorted(set(ids))
        out: dict[str, tuple[int, float]] = {}
        if not wanted:
            return out
        since = _stored(since)
        async for d in self.recent_hours.find({"_id": {"$in": wanted}}):
            hours = [e["hours"] for e in d.get("entries", []) if e["at"] >= since]
            if hours:
                out[d["_id"]] = (len(hours), math.fsum(hours))
        return out

    async def squads_by_id(self, ids: Iterable[str]) -> dict[str, Squad]:
        """The squads among ``ids`` (one query)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        cursor = self.squads.find({"_id": {"$in": wanted}})
        return {d["_id"]: Squad.from_doc(d) async for d in cursor}

    async def get_brigade(self) -> Brigade | None:
        """The brigade, if it was ever stored."""
        doc = await self.brigade.find_one({"_id": BRIGADE_ID})
        return None if doc is None else Brigade.from_doc(doc)

    async def counter_values(self, kinds: Iterable[str]) -> dict[str, int]:
        """The id counters among ``kinds`` (a missing one is absent)."""
        wanted = sorted(set(kinds))
        if not wanted:
            return {}
        cursor = self.counters.find({"_id": {"$in": wanted}})
        return {d["_id"]: int(d["n"]) async for d in cursor}

    async def recipients_by_id(self, ids: Iterable[str]) -> dict[str, Recipient]:
        """The care recipients among ``ids`` (one query)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        cursor = self.recipients.find({"_id": {"$in": wanted}})
        return {d["_id"]: Recipient.from_doc(d) async for d in cursor}

    async def visits_for(self, ids: Iterable[str], open_of: Iterable[str]) -> dict[str, Visit]:
        """The visits among ``ids`` and the open visits of the recipients ``open_of``.

        One query by ``_id``; and, for recipients being stopped (rare), one by
        ``recipient_id`` on its index, of which the open visits are kept — a ``$or`` of the
        two, or a status next to the ``$in``, makes SecantusDB scan every visit."""
        wanted, recipients = sorted(set(ids)), sorted(set(open_of))
        by_id, of_recipients = await asyncio.gather(
            self._visits({"_id": {"$in": wanted}}) if wanted else _no_visits(),
            self._visits({"recipient_id": {"$in": recipients}}) if recipients else _no_visits(),
        )
        out = {v.id: v for v in of_recipients if v.status == VisitStatus.OPEN}
        out.update((v.id, v) for v in by_id)
        return out

    async def _visits(self, flt: Doc) -> list[Visit]:
        return [Visit.from_doc(d) async for d in self.visits.find(flt)]

    # --- writes, as effects -----------------------------------------------------------------

    def insert_task(self, fx: Effects, task: Task) -> None:
        """A new task (the case's unique index refuses a second one)."""
        fx.insert(TASKS, task.to_doc())

    def save_task(self, fx: Effects, task: Task, read_version: int) -> None:
        """Write a changed task, if nobody changed it since it was read."""
        task.version = read_version + 1
        fx.replace(TASKS, {"_id": task.id, "version": _read_at(read_version)}, task.to_doc())

    def insert_volunteer(self, fx: Effects, vol: Volunteer) -> None:
        """A newly registered volunteer (a duplicate id decides the batch again)."""
        fx.insert(VOLUNTEERS, vol.to_doc())

    def save_volunteer(self, fx: Effects, vol: Volunteer, read_version: int) -> None:
        """Write a changed volunteer, if nobody changed them since they were read."""
        vol.version = read_version + 1
        fx.replace(VOLUNTEERS, {"_id": vol.id, "version": _read_at(read_version)}, vol.to_doc())

    def insert_squad(self, fx: Effects, squad: Squad) -> None:
        """A newly formed squad."""
        fx.insert(SQUADS, squad.to_doc())

    def save_squad(self, fx: Effects, squad: Squad, read_version: int) -> None:
        """Write a changed squad, if nobody changed it since it was read."""
        squad.version = read_version + 1
        fx.replace(SQUADS, {"_id": squad.id, "version": _read_at(read_version)}, squad.to_doc())

    def save_brigade(self, fx: Effects, brigade: Brigade, read_version: int | None) -> None:
        """Write the brigade: a first one (``read_version`` None), or a change of the one
        read at ``read_version``."""
        if read_version is None:
            brigade.version = 0
            fx.insert(BRIGADE, brigade.to_doc())
            return
        brigade.version = read_version + 1
        flt = {"_id": BRIGADE_ID, "version": _read_at(read_version)}
        fx.replace(BRIGADE, flt, brigade.to_doc())

    def add_hours(self, fx: Effects, entry: ServiceHours, keep_from: datetime) -> None:
        """Hours of one completed task or visit (its id is the entry's: once each), added to
        its volunteer's recent hours, whose entries before ``keep_from`` go."""
        fx.insert(HOURS, entry.to_doc())
        if not entry.volunteer_id:
            return
        flt = {"_id": entry.volunteer_id}
        fx.update(RECENT_HOURS, flt, {"$pull": {"entries": {"at": {"$lt": keep_from}}}})
        recent = _recent_entry(entry.id, entry.at, entry.hours)
        fx.update(RECENT_HOURS, flt, {"$addToSet": {"entries": recent}}, upsert=True)

    def insert_recipient(self, fx: Effects, rec: Recipient) -> None:
        """A newly registered care recipient."""
        fx.insert(RECIPIENTS, rec.to_doc())

    def save_recipient(self, fx: Effects, rec: Recipient, read_version: int) -> None:
        """Write a changed recipient, if nobody changed them since they were read."""
        rec.version = read_version + 1
        fx.replace(RECIPIENTS, {"_id": rec.id, "version": _read_at(read_version)}, rec.to_doc())

    def insert_visit(self, fx: Effects, visit: Visit) -> None:
        """A visit that fell due (recipient and sequence number are unique)."""
        fx.insert(VISITS, visit.to_doc())

    def save_visit(self, fx: Effects, visit: Visit, read_version: int) -> None:
        """Write a changed visit, if nobody changed it since it was read."""
        visit.version = read_version + 1
        flt = {"_id": visit.id, "version": _read_at(read_version)}
        fx.replace(VISITS, flt, visit.to_doc())

    def set_counter(self, fx: Effects, kind: str, read: int | None, value: int) -> None:
        """Move an id counter from ``read`` (None: there was none) to ``value``."""
        if read is None:
            fx.insert(COUNTERS, {"_id": kind, "n": value})
        else:
            fx.update(COUNTERS, {"_id": kind, "n": read}, {"$set": {"n": value}}, must_match=True)

    # --- at start-up ---------------------------------------------------------------------

    async def ensure_recent_hours(self, days: int, now: datetime) -> int:
        """Make ``recent_hours`` hold the last ``days`` days of entries: when it held fewer
        (a database from before it, or a longer fairness window than it was kept for),
        the hours of those days are read (one scan of the hours, at start-up, that once)
        and added — each entry with its id, so an entry a replica records meanwhile is not
        added twice. Hours a replica of an older version records after this are not (deploy
        every replica). How many volunteers were filled."""
        held = (await self.counter_values([RECENT_HOURS_DAYS])).get(RECENT_HOURS_DAYS)
        filled = 0
        if held is None or held < days:
            entries: dict[str, list[Doc]] = {}
            cursor = self.hours.find(
                {"at": {"$gte": now - timedelta(days=days)}},
                {"volunteer_id": 1, "at": 1, "hours": 1},
            )
            async for d in cursor:
                if d.get("volunteer_id"):
                    recent = _recent_entry(d["_id"], d["at"], d["hours"])
                    entries.setdefault(d["volunteer_id"], []).append(recent)
            ops = [
                UpdateOne({"_id": vid}, {"$addToSet": {"entries": {"$each": e}}}, upsert=True)
                for vid, e in entries.items()
            ]
            if ops:
                await self.recent_hours.bulk_write(ops, ordered=False)
            filled = len(ops)
        if held != days:  # fewer days from now on, if the window shrank
            await self.counters.update_one(
                {"_id": RECENT_HOURS_DAYS}, {"$set": {"n": days}}, upsert=True
            )
        return filled

    # --- reads for the API and the gauges ---------------------------------------------------

    async def get_task(self, task_id: str) -> Task | None:
        """One task."""
        doc = await self.tasks.find_one({"_id": task_id})
        return None if doc is None else Task.from_doc(doc)

    async def list_tasks(
        self,
        *,
        volunteer_id: str | None,
        request_id: str | None,
        case_id: str | None,
        status: str | None,
        limit: int,
    ) -> list[Task]:
        """Tasks matching the filters given, newest first."""
        flt = _only(
            volunteer_id=volunteer_id, request_id=request_id, case_id=case_id, status=status
        )
        cursor = self.tasks.find(flt).sort("created_at", -1).limit(limit)
        return [Task.from_doc(d) async for d in cursor]

    async def get_volunteer(self, vid: str) -> Volunteer | None:
        """One volunteer."""
        doc = await self.volunteers.find_one({"_id": vid})
        return None if doc is None else Volunteer.from_doc(doc)

    async def list_volunteers(
        self,
        *,
        skill: str | None = None,
        community: str | None = None,
        compound: str | None = None,
        active: bool | None = None,
        party_member: bool | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Volunteer]:
        """Volunteers matching the filters given, by id, after the cursor ``after``."""
        flt = _only(
            skills=skill,
            community=community,
            compound=compound,
            active=active,
            party_member=party_member,
        )
        if after:
            flt["_id"] = {"$gt": after}
        cursor = self.volunteers.find(flt).sort("_id", 1).limit(limit)
        return [Volunteer.from_doc(d) async for d in cursor]

    async def active_members(self, skills: Iterable[str]) -> list[Volunteer]:
        """Active volunteers with any of ``skills``, by id (the squads' members)."""
        wanted = sorted(set(skills))
        if not wanted:
            return []
        cursor = self.volunteers.find(candidates_filter(wanted)).sort("_id", 1)
        return [Volunteer.from_doc(d) async for d in cursor]

    async def list_squads(self) -> list[Squad]:
        """Every squad, by id."""
        return [Squad.from_doc(d) async for d in self.squads.find({}).sort("_id", 1)]

    async def get_squad(self, squad_id: str) -> Squad | None:
        """One squad."""
        doc = await self.squads.find_one({"_id": squad_id})
        return None if doc is None else Squad.from_doc(doc)

    async def hours_of(self, vid: str, since: datetime) -> HoursSummary:
        """One volunteer's hours: all time, since ``since``, by skill, the 20 latest."""
        total, count, recent, recent_count = 0.0, 0, 0.0, 0
        by_skill: dict[str, float] = {}
        entries: list[ServiceHours] = []
        async for d in self.hours.find({"volunteer_id": vid}):
            e = ServiceHours.from_doc(d)
            entries.append(e)
            total += e.hours
            count += 1
            if e.at >= since:
                recent += e.hours
                recent_count += 1
            skill = e.skill or "other"
            by_skill[skill] = by_skill.get(skill, 0.0) + e.hours
        entries.sort(key=lambda e: e.at, reverse=True)
        return HoursSummary(total, count, recent, recent_count, by_skill, entries[:20])

    async def hours_by_skill(self, since: datetime | None) -> dict[str, SkillHours]:
        """Hours, entries and distinct volunteers per skill (since ``since``)."""
        match: Doc = {"at": {"$gte": since}} if since else {}
        out: dict[str, SkillHours] = {}
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
            out[str(row["_id"])] = SkillHours(float(row["h"]), int(row["n"]), len(row["v"]))
        return out

    async def get_recipient(self, rid: str) -> Recipient | None:
        """One care recipient."""
        doc = await self.recipients.find_one({"_id": rid})
        return None if doc is None else Recipient.from_doc(doc)

    async def list_recipients(
        self, *, community: str | None, care_type: str | None, active: bool | None, limit: int
    ) -> list[Recipient]:
        """Care recipients matching the filters given, by id."""
        flt = _only(community=community, care_type=care_type, active=active)
        cursor = self.recipients.find(flt).sort("_id", 1).limit(limit)
        return [Recipient.from_doc(d) async for d in cursor]

    async def visits_of(self, rid: str, limit: int = 200) -> list[Visit]:
        """A recipient's visits, newest first."""
        cursor = self.visits.find({"recipient_id": rid}).sort("seq", -1).limit(limit)
        return [Visit.from_doc(d) async for d in cursor]

    async def list_visits(
        self, *, assigned_to: str | None, status: str | None, limit: int
    ) -> list[Visit]:
        """Visits (assigned to a volunteer, in a status), latest due first."""
        flt = _only(assigned_volunteers=assigned_to, status=status)
        cursor = self.visits.find(flt).sort("due_at", -1).limit(limit)
        return [Visit.from_doc(d) async for d in cursor]

    async def overdue_visits(self, community: str | None) -> list[Visit]:
        """Visits marked overdue and not yet made, oldest first."""
        flt = _only(status=VisitStatus.OVERDUE.value, community=community)
        cursor = self.visits.find(flt).sort("deadline", 1).limit(500)
        return [Visit.from_doc(d) async for d in cursor]

    async def utilisation(self) -> tuple[int, int, int]:
        """(active volunteers, open tasks, total capacity): the volunteers on the
        ``active_1_skills_1`` index, the open tasks counted on ``status_1_volunteer_id_1``
        (a ``$in`` alone on an index's first field is served by it)."""
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


def candidates_filter(skills: Sequence[str]) -> Doc:
    """Active volunteers with any of ``skills`` (the ``active_1_skills_1`` index)."""
    return {"active": True, "skills": {"$in": list(skills)}}


def open_tasks_filter(status: str, volunteer_ids: Sequence[str]) -> Doc:
    """The tasks in ``status`` held by any of ``volunteer_ids``: an equality on the index's
    first field and a ``$in`` on its second (``status_1_volunteer_id_1``)."""
    return {"status": status, "volunteer_id": {"$in": list(volunteer_ids)}}


def _recent_entry(entry_id: str, at: datetime, hours: float) -> Doc:
    """An entry of ``recent_hours`` (always built here: ``$addToSet`` compares whole
    entries, field order included)."""
    return {"id": entry_id, "at": at, "hours": float(hours)}


def _stored(at: datetime) -> datetime:
    """``at`` as the database compares it: to the millisecond, truncated."""
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


async def _no_visits() -> list[Visit]:
    return []


def _only(**conditions: Any) -> Doc:
    """Equality conditions for the filters that were given (None: not filtered)."""
    return {k: v for k, v in conditions.items() if v is not None}
