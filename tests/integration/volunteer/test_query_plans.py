"""Volunteer's hot-path reads are served by an index on SecantusDB. Tasks, hours and visits
only accumulate, and its planner scans the whole collection for a ``$in`` on two fields, a
``$in`` next to an equality the index does not start with, a ``$in`` next to a range, and
a top-level ``$or``. The store runs each read of a batch (a poll of case events and its
candidates, a batch of fired deadlines, HTTP batches) and of the gauges against a real
collection while its commands are recorded, and each recorded ``find`` and ``aggregate``
is explained: what is checked is what the store sends, not a copy of it.

A volunteer's recent hours are read from one document per volunteer kept with the hours:
they must say what the hours say (the old aggregate over the hours is the reference), and
be filled in at start-up for a database from before them.

Writes cannot be checked by ``explain`` (SecantusDB's reads no update's filter); the
store's effects are held to finding their document by ``_id``."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from services.volunteer.domain.care import Recipient, Visit, VisitStatus
from services.volunteer.domain.tasks import OPEN_STATES, Task, TaskStatus
from services.volunteer.domain.volunteers import ServiceHours, Volunteer
from services.volunteer.store import (
    HOURS,
    INDEXES,
    OPEN,
    RECENT_HOURS,
    TASKS,
    VISITS,
    VOLUNTEERS,
    VolunteerStore,
    candidates_filter,
    open_tasks_filter,
)
from tests.support import unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc, ensure_indexes
from tongxin.runtime.outbox import MongoOutbox
from tongxin.runtime.uow import Effects, UnitOfWork, Update

NOW = datetime.now(UTC)
KEEP = timedelta(days=31)  # the fairness window (30 days) and the margin


@dataclass
class Recorder(monitoring.CommandListener):
    """The ``find`` and ``aggregate`` commands sent while ``on``."""

    on: bool = False
    commands: list[Doc] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on and event.command_name in ("find", "aggregate"):
            self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[Doc]:
        taken, self.commands = self.commands, []
        return taken


@dataclass
class Db:
    database: AsyncDatabase[Doc]
    store: VolunteerStore
    uow: UnitOfWork
    recorder: Recorder


@pytest.fixture
async def db(stack: LocalStack) -> AsyncIterator[Db]:
    recorder = Recorder()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        stack.mongodb_uri, tz_aware=True, event_listeners=[recorder]
    )
    name = unique("volunteer_plans_")
    database = client[name]
    await ensure_indexes(database, INDEXES)
    uow = UnitOfWork(client, name, MongoOutbox(database, unique("plans.") + "."))
    yield Db(database, VolunteerStore(database), uow, recorder)
    await client.drop_database(name)
    await client.close()


def stages(explained: dict[str, Any]) -> list[str]:
    """The winning plan's stages, outermost first; an index scan names its index."""
    plan = explained["queryPlanner"]["winningPlan"]
    out = []
    while plan:
        stage = plan["stage"]
        out.append(f"IXSCAN {plan['indexName']}" if stage == "IXSCAN" else stage)
        plan = plan.get("inputStage")
    return out


async def explain(db: AsyncDatabase[Doc], command: Doc) -> list[str]:
    """The plan of a recorded (or built) ``find`` or ``aggregate``."""
    if "aggregate" in command:
        cmd: Doc = {"aggregate": command["aggregate"], "pipeline": command["pipeline"]}
        cmd["cursor"] = {}
    else:
        cmd = {"find": command["find"], "filter": command.get("filter", {})}
        for key in ("sort", "limit", "projection"):
            if key in command:
                cmd[key] = command[key]
    return stages(await db.command("explain", cmd))


def _volunteer(vid: str, skills: list[str], active: bool = True) -> Doc:
    return Volunteer(id=vid, name=vid, skills=skills, active=active).to_doc()


def _task(n: int, status: TaskStatus, vid: str | None) -> Doc:
    return Task(
        id=f"task:C-{n}",
        case_id=f"C-{n}",
        request_id=f"YS-{n}",
        tier="general",
        category="elderly_care",
        skills=["elder_care"],
        community="community:liyuan",
        compound=None,
        lat=None,
        lng=None,
        need_start=NOW,
        need_end=NOW,
        created_at=NOW,
        updated_at=NOW,
        status=status,
        volunteer_id=vid,
    ).to_doc()


def _visit(rid: str, seq: int, status: VisitStatus) -> Doc:
    return Visit(
        id=f"V-{rid}-{seq}",
        recipient_id=rid,
        seq=seq,
        care_type="elderly_living_alone",
        community="community:liyuan",
        compound=None,
        volunteer_id="v:a",
        assigned_volunteers=["v:a"],
        due_at=NOW,
        deadline=NOW,
        status=status,
        created_at=NOW,
    ).to_doc()


def _hours(hid: str, vid: str, at: datetime, hours: float) -> ServiceHours:
    return ServiceHours(
        id=hid,
        kind="task",
        volunteer_id=vid,
        hours=hours,
        skill="elder_care",
        community=None,
        at=at,
    )


async def _record_hours(db: Db, *entries: ServiceHours) -> None:
    """Commit ``entries`` in one unit of work, as a batch completing them would."""
    fx = Effects()
    for e in entries:
        db.store.add_hours(fx, e, e.at - KEEP)
    await db.uow.commit(fx)


async def _from_the_hours(db: Db, ids: list[str], since: datetime) -> dict[str, tuple[int, float]]:
    """What the aggregate the store ran before said (the reference)."""
    out: dict[str, tuple[int, float]] = {}
    async for row in await db.database[HOURS].aggregate(
        [
            {"$match": {"volunteer_id": {"$in": ids}, "at": {"$gte": since}}},
            {"$group": {"_id": "$volunteer_id", "n": {"$sum": 1}, "h": {"$sum": "$hours"}}},
        ]
    ):
        out[row["_id"]] = (int(row["n"]), float(row["h"]))
    return out


def _close(a: dict[str, tuple[int, float]], b: dict[str, tuple[int, float]]) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and math.isclose(a[k][1], b[k][1]) for k in a
    )


async def test_the_check_tells_a_scan_from_an_index(db: Db) -> None:
    # the shapes volunteer used before: what a regression would look like
    d = db.database
    vids = ["v:a", "v:b"]
    old_open = {"find": TASKS, "filter": {"status": {"$in": OPEN}, "volunteer_id": {"$in": vids}}}
    old_recent = {
        "aggregate": HOURS,
        "pipeline": [{"$match": {"volunteer_id": {"$in": vids}, "at": {"$gte": NOW}}}],
    }
    old_visits = {
        "find": VISITS,
        "filter": {"$or": [{"_id": {"$in": ["V-1"]}}, {"recipient_id": {"$in": ["r"]}}]},
    }
    old_stopping = {"find": VISITS, "filter": {"recipient_id": {"$in": ["r"]}, "status": "open"}}
    for old in (old_open, old_recent, old_visits, old_stopping):
        assert "COLLSCAN" in await explain(d, old), old
    # and what they are now
    now_open = {"find": TASKS, "filter": open_tasks_filter(OPEN[0], vids)}
    assert "IXSCAN status_1_volunteer_id_1" in await explain(d, now_open)
    now_candidates = {"find": VOLUNTEERS, "filter": candidates_filter(["legal", "elder_care"])}
    assert "IXSCAN active_1_skills_1" in await explain(d, now_candidates)


async def test_hot_path_reads_use_an_index(db: Db) -> None:
    s, d = db.store, db.database
    await d[VOLUNTEERS].insert_many(
        [
            _volunteer("v:a", ["elder_care", "legal"]),
            _volunteer("v:b", ["elder_care"]),
            _volunteer("v:c", ["elder_care"], active=False),
            _volunteer("v:d", ["legal"]),
        ]
    )
    await d[TASKS].insert_many(
        [
            _task(1, TaskStatus.OFFERED, "v:a"),
            _task(2, TaskStatus.ACCEPTED, "v:a"),
            _task(3, TaskStatus.COMPLETED, "v:a"),
            _task(4, TaskStatus.ACCEPTED, "v:b"),
            _task(5, TaskStatus.OFFERED, "v:d"),
            _task(6, TaskStatus.UNMATCHED, None),
        ]
    )
    await _record_hours(
        db,
        _hours("h1", "v:a", NOW - timedelta(days=40), 5.0),
        _hours("h2", "v:a", NOW - timedelta(days=2), 1.5),
        _hours("h3", "v:b", NOW - timedelta(hours=1), 2.0),
    )
    await d[VISITS].insert_many(
        [
            _visit("care:1", 1, VisitStatus.COMPLETED),
            _visit("care:1", 2, VisitStatus.OVERDUE),
            _visit("care:1", 3, VisitStatus.OPEN),
            _visit("care:2", 1, VisitStatus.OPEN),
        ]
    )
    rec = Recipient(id="care:1", name="x", care_type="elderly_living_alone", community="c")
    await d["care_recipients"].insert_one(rec.to_doc())
    await d["counters"].insert_one({"_id": "volunteer", "n": 4})
    rec_ = db.recorder
    rec_.on = True

    reads: dict[str, list[Doc]] = {}
    candidates = await s.active_with_skills(["elder_care"])
    assert sorted(v.id for v in candidates) == ["v:a", "v:b"]
    reads["a pool's candidates"] = rec_.take()
    assert await s.open_counts(["v:a", "v:b", "v:c"]) == {"v:a": 2, "v:b": 1}
    reads["a pool's open tasks"] = rec_.take()
    since = NOW - timedelta(days=30)
    recent = await s.recent_work(["v:a", "v:b", "v:c"], since)
    assert recent == {"v:a": (1, 1.5), "v:b": (1, 2.0)}
    reads["a pool's recent hours"] = rec_.take()
    assert set(await s.tasks_by_id(["task:C-1", "task:C-9"])) == {"task:C-1"}
    reads["a batch's tasks"] = rec_.take()
    assert [t.id for t in await s.offered_to(["v:a", "v:c"])] == ["task:C-1"]
    reads["a deactivation's pending offers"] = rec_.take()
    visits = await s.visits_for(["V-care:2-1"], ["care:1"])
    assert set(visits) == {"V-care:2-1", "V-care:1-3"}  # care:1's open one only
    reads["a care batch's visits"] = rec_.take()
    assert set(await s.visits_for(["V-care:1-2"], [])) == {"V-care:1-2"}
    reads["a deadline batch's visits"] = rec_.take()
    assert set(await s.recipients_by_id(["care:1", "care:9"])) == {"care:1"}
    reads["a care batch's recipients"] = rec_.take()
    assert set(await s.volunteers_by_id(["v:a", "v:z"])) == {"v:a"}
    reads["a batch's volunteers"] = rec_.take()
    assert await s.counter_values(["volunteer"]) == {"volunteer": 4}
    reads["the id counters"] = rec_.take()
    await s.squads_by_id(["squad:legal"])
    reads["a registry batch's squads"] = rec_.take()
    await s.get_brigade()
    reads["the brigade"] = rec_.take()
    assert await s.utilisation() == (3, 4, 9)
    reads["the utilisation gauge"] = rec_.take()
    assert await s.count_overdue() == 1
    reads["the overdue gauge"] = rec_.take()
    rec_.on = False

    plans: dict[str, list[list[str]]] = {}
    for name, commands in reads.items():
        assert commands, name
        plans[name] = [await explain(d, c) for c in commands]
    scans = {name: p for name, p in plans.items() if any("COLLSCAN" in stage for stage in p)}
    assert not scans, scans
    assert all("IXSCAN" in " ".join(p) for ps in plans.values() for p in ps), plans
    # one query per open status, each on the index made for it
    assert len(plans["a pool's open tasks"]) == len(OPEN_STATES)
    assert all("IXSCAN status_1_volunteer_id_1" in p for p in plans["a pool's open tasks"])
    assert plans["a pool's candidates"] == [["FETCH", "IXSCAN active_1_skills_1"]]
    assert plans["a deactivation's pending offers"] == [["FETCH", "IXSCAN status_1_volunteer_id_1"]]
    assert plans["a pool's recent hours"] == [["FETCH", "IXSCAN _id_"]]
    assert plans["a deadline batch's visits"] == [["FETCH", "IXSCAN _id_"]]
    assert sorted(map(" ".join, plans["a care batch's visits"])) == [
        "FETCH IXSCAN _id_",
        "FETCH IXSCAN recipient_id_1_seq_1",
    ]


async def test_writes_find_their_document_by_id(db: Db) -> None:
    s = db.store
    fx = Effects()
    task = Task.from_doc(_task(1, TaskStatus.OFFERED, "v:a"))
    s.save_task(fx, task, 0)
    s.save_task(fx, task, 3)
    s.save_visit(fx, Visit.from_doc(_visit("care:1", 1, VisitStatus.OPEN)), 2)
    s.save_volunteer(fx, Volunteer.from_doc(_volunteer("v:a", ["legal"])), 1)
    s.set_counter(fx, "volunteer", 4, 5)
    s.add_hours(fx, _hours("h1", "v:a", NOW, 1.0), NOW - KEEP)
    updates = [w for w in fx.writes if isinstance(w, Update)]
    assert len(updates) == 7
    for u in updates:  # SecantusDB finds a write's documents by its first indexed clause
        key, value = next(iter(u.filter.items()))
        assert key == "_id" and isinstance(value, str), u
        assert not any(k.startswith("$") for k in u.filter), u


async def test_recent_hours_say_what_the_hours_say(db: Db) -> None:
    s, d = db.store, db.database
    since = NOW - timedelta(days=30)
    at_since = since.replace(microsecond=since.microsecond // 1000 * 1000)
    old = _hours("old", "v:a", NOW - timedelta(days=45), 4.0)
    await _record_hours(db, old)
    await _record_hours(
        db,
        _hours("edge-out", "v:a", at_since - timedelta(milliseconds=1), 8.0),
        _hours("edge-in", "v:a", at_since, 0.5),  # stored to the millisecond: in the window
        _hours("t1", "v:a", NOW - timedelta(days=3), 1.25),
    )
    # two entries of one batch, same instant, same hours: both count
    await _record_hours(
        db,
        _hours("t2", "v:a", NOW, 2.0),
        _hours("t3", "v:a", NOW, 2.0),
        _hours("t4", "v:b", NOW, 1.0),
    )
    ids = ["v:a", "v:b", "v:c"]
    recent = await s.recent_work(ids, since)
    assert recent["v:a"] == (4, 5.75) and recent["v:b"] == (1, 1.0) and "v:c" not in recent
    assert _close(recent, await _from_the_hours(db, ids, since))
    # what fell out of the kept days went with a later entry
    doc = await d[RECENT_HOURS].find_one({"_id": "v:a"})
    assert doc is not None
    assert {e["id"] for e in doc["entries"]} == {"edge-out", "edge-in", "t1", "t2", "t3"}


async def test_recent_hours_are_filled_in_at_start_up(db: Db) -> None:
    s, d = db.store, db.database
    # a database from before recent hours: the hours alone
    hours = [
        _hours("h1", "v:a", NOW - timedelta(days=50), 3.0),
        _hours("h2", "v:a", NOW - timedelta(days=20), 1.0),
        _hours("h3", "v:a", NOW - timedelta(days=1), 2.5),
        _hours("h4", "v:b", NOW - timedelta(days=35), 6.0),
    ]
    await d[HOURS].insert_many([h.to_doc() for h in hours])
    ids = ["v:a", "v:b"]
    assert await s.recent_work(ids, NOW - timedelta(days=30)) == {}

    assert await s.ensure_recent_hours(31, NOW) == 1
    for days in (30, 5):
        since = NOW - timedelta(days=days)
        assert _close(await s.recent_work(ids, since), await _from_the_hours(db, ids, since))
    assert await s.ensure_recent_hours(31, NOW) == 0  # once
    # an entry recorded by a replica running meanwhile is not doubled by a later fill
    await _record_hours(db, _hours("h5", "v:b", NOW, 1.0))

    # a longer fairness window: the older days are filled in, nothing twice
    assert await s.ensure_recent_hours(61, NOW) == 2
    since = NOW - timedelta(days=60)
    assert _close(await s.recent_work(ids, since), await _from_the_hours(db, ids, since))
    assert await s.recent_work(ids, since) == {"v:a": (3, 6.5), "v:b": (2, 7.0)}
    assert await s.counter_values(["recent_hours_days"]) == {"recent_hours_days": 61}
