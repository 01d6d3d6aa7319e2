"""Notify's hot-path reads are served by an index on SecantusDB. Deliveries only
accumulate, and its planner scans the whole collection for a ``$in`` on any field but
``_id`` (unless the first of an index), for a top-level ``$or`` and for ``_id`` next to
other conditions. The store runs each read against a real collection while its commands
are recorded, and each recorded ``find`` is explained: what is checked is what the store
sends, not a copy of it.

Writes cannot be checked this way (SecantusDB's ``explain`` reads no update's filter): the
claims and hand-backs recorded here, like the effects in
``tests/unit/notify/test_store_filters.py``, are held to filtering on ``_id`` first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from services.notify.domain.delivery import (
    OPEN_STATUSES,
    Delivery,
    DeliveryQuery,
    Status,
    Take,
    delivery_id,
)
from services.notify.domain.templates import Message
from services.notify.store import DELIVERIES, INDEXES, NotifyStore, resumable_filter
from tests.support import unique
from tongxin.contracts.enums import NotifyChannel
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc, ensure_indexes


@dataclass
class Recorder(monitoring.CommandListener):
    """The ``find`` and ``update`` commands sent while ``on``."""

    on: bool = False
    commands: list[Doc] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on and event.command_name in ("find", "update"):
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
    store: NotifyStore
    recorder: Recorder


@pytest.fixture
async def db(stack: LocalStack) -> AsyncIterator[Db]:
    recorder = Recorder()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        stack.mongodb_uri, tz_aware=True, event_listeners=[recorder]
    )
    name = unique("notify_plans_")
    database = client[name]
    await ensure_indexes(database, INDEXES)
    yield Db(database, NotifyStore(database), recorder)
    await client.drop_database(name)
    await client.close()


def _delivery(n: int, status: Status, lease_until: datetime) -> Delivery:
    recipient = f"staff:{n % 3}"
    return Delivery(
        id=delivery_id(f"ev-{n}", recipient, "webhook"),
        event_id=f"ev-{n}",
        event_type="case.routed",
        request_id=f"YS-{n % 4}",
        recipient=recipient,
        channel=NotifyChannel.WEBHOOK,
        message=Message("t", "x"),
        status=status,
        created_at=lease_until,
        updated_at=lease_until,
        lease_until=lease_until,
    )


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
    """The plan of a recorded (or built) ``find``."""
    cmd: Doc = {"find": command["find"], "filter": command.get("filter", {})}
    for key in ("sort", "limit"):
        if key in command:
            cmd[key] = command[key]
    return stages(await db.command("explain", cmd))


async def test_the_check_tells_a_scan_from_an_index(db: Db) -> None:
    # the shapes notify used before: what a regression would look like
    now = datetime.now(UTC)
    old_sweep = {"status": {"$in": [s.value for s in OPEN_STATUSES]}, "lease_until": {"$lt": now}}
    assert "COLLSCAN" in await explain(db.database, {"find": DELIVERIES, "filter": old_sweep})
    old_read_back = {"_id": {"$in": ["a", "b"]}, "claim": "token"}
    assert "COLLSCAN" in await explain(db.database, {"find": DELIVERIES, "filter": old_read_back})
    # and what they are now
    sweep = resumable_filter(Status.PENDING, now)
    assert "IXSCAN resumable" in await explain(db.database, {"find": DELIVERIES, "filter": sweep})


async def test_hot_path_reads_use_an_index(db: Db) -> None:
    now = datetime.now(UTC)
    s = db.store
    docs = [
        _delivery(n, status, now + timedelta(minutes=m))
        for n, (status, m) in enumerate(
            [
                (Status.PENDING, -5),  # abandoned
                (Status.RETRYING, -10),  # abandoned first
                (Status.PENDING, 5),
                (Status.SENT, -60),
                (Status.SENDING, 5),
            ]
        )
    ]
    await db.database[DELIVERIES].insert_many([d.to_doc() for d in docs])
    ids = [d.id for d in docs]
    # the oldest abandoned first, whatever its status: none waits behind the other status
    assert [d.id for d in await s.resumable(now, 1)] == [ids[1]]
    rec = db.recorder
    rec.on = True

    reads: dict[str, list[Doc]] = {}
    assert {d.event_id for d in await s.deliveries_of_events(["ev-0", "ev-1", "ev-9"])} == {
        "ev-0",
        "ev-1",
    }
    reads["a redelivered batch's deliveries"] = rec.take()
    assert set(await s.deliveries_by_id(ids[:2])) == set(ids[:2])
    reads["released deliveries"] = rec.take()
    found = await s.resumable(now, 10)
    assert [d.id for d in found] == [ids[1], ids[0]]
    reads["the resume sweep"] = rec.take()
    assert await s.claim(ids[:3], Take.ABANDONED, "me", now + timedelta(minutes=1), "tok", now) == 2
    claims = rec.take()
    assert set(await s.claimed(ids[:3], "tok")) == set(ids[:2])  # the token, checked after
    reads["a claim's read-back"] = rec.take()
    await s.hand_back(ids[:2], "tok", "lost", now)
    await s.release_held(ids[:2], "me", now)
    claims += rec.take()
    await s.contacts(["YS-1", "YS-2"])
    reads["contacts"] = rec.take()
    await s.cases(["C-1", "C-2"])
    reads["cases"] = rec.take()
    for name, query in {
        "the API by request": DeliveryQuery(request_id="YS-1"),
        "the API by recipient": DeliveryQuery(recipients=["staff:1"]),
        "the API for a unit": DeliveryQuery(recipients=["staff:1", "liaison:staff:1"]),
        "the API by status": DeliveryQuery(status="pending"),
    }.items():
        await s.list(query, 10)
        reads[name] = rec.take()
    rec.on = False

    plans: dict[str, list[list[str]]] = {}
    for name, commands in reads.items():
        finds = [c for c in commands if "find" in c]
        assert finds, name
        plans[name] = [await explain(db.database, c) for c in finds]
    scans = {name: p for name, p in plans.items() if any("COLLSCAN" in stage for stage in p)}
    assert not scans, scans
    assert all("IXSCAN" in " ".join(p) for ps in plans.values() for p in ps), plans
    # one query per open status, each on the index made for it
    assert len(plans["the resume sweep"]) == len(OPEN_STATUSES)
    assert all("IXSCAN resumable" in p for p in plans["the resume sweep"])
    assert plans["a claim's read-back"] == [["FETCH", "IXSCAN _id_"]]
    assert "IXSCAN once_per_event_recipient_channel" in plans["a redelivered batch's deliveries"][0]

    # the writes: by primary key first (explain cannot show their plans)
    updates = [u["q"] for c in claims for u in c["updates"]]
    assert len(updates) == 3
    for q in updates:
        assert next(iter(q)) == "_id" and set(q["_id"]) == {"$in"}, q
        assert not any(k.startswith("$") for k in q), q
