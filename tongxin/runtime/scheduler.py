"""Durable deadlines: timers in the database, claimed in batches with a lease, fired once.

A use case schedules a deadline with the writes of the batch that creates what it guards
(:func:`add`, :func:`schedule`; :func:`cancel` and :func:`cancel_subject` stop them). Every
replica runs a :class:`BatchScheduler`, which leases due deadlines in batches and fires each
batch as one unit of work: the handler's effects and each deadline's ``status: fired``
commit together, the latter only for the current lease holder. A replica that stalls past
its lease while another takes over decides again and finds the deadline gone, so the
effect happens once; a restart loses nothing because nothing lives in memory.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.retention import Expiry
from tongxin.runtime.uow import Decision, Effects, UnitOfWork

log = logging.getLogger(__name__)

DEADLINES = "deadlines"
DEADLINE_INDEXES = [
    IndexSpec(DEADLINES, [("status", 1), ("due_at", 1)], name="due"),
    IndexSpec(DEADLINES, [("subject", 1), ("status", 1)]),
]

PENDING, FIRED, CANCELLED = "pending", "fired", "cancelled"


def deadline_expiries(window: timedelta) -> list[Expiry]:
    """Fired deadlines serve no one ``window`` after their due time, cancelled ones
    ``window`` after they were cancelled (a case's resolve deadline may be due weeks after
    it was cancelled). Both found through the ``due`` index's status."""
    return [
        Expiry(DEADLINES, "due_at", window, {"status": FIRED}),
        Expiry(DEADLINES, "cancelled_at", window, {"status": CANCELLED}),
    ]


def due_filter(now: datetime) -> Doc:
    """The pending deadlines due at ``now`` (served by the ``due`` index)."""
    return {"status": PENDING, "due_at": {"$lte": now}}


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class LeaseLost(Exception):
    """Another replica holds the deadline now; this one's transaction must abort."""


def _pending(kind: str, due_at: datetime, subject: str, payload: Mapping[str, Any] | None) -> Doc:
    """The fields of a pending deadline nobody holds."""
    return {
        "kind": kind,
        "due_at": due_at,
        "subject": subject,
        "payload": dict(payload or {}),
        "status": PENDING,
        "lease_owner": None,
        "lease_until": None,
    }


# — deadlines as effects of a unit of work —


def schedule(
    fx: Effects,
    deadline_id: str,
    kind: str,
    due_at: datetime,
    subject: str,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Create (or move) a pending deadline with the batch's other writes."""
    fx.update(
        DEADLINES,
        {"_id": deadline_id},
        {"$set": _pending(kind, due_at, subject, payload)},
        upsert=True,
    )


def add(
    fx: Effects,
    deadline_id: str,
    kind: str,
    due_at: datetime,
    subject: str,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Create a pending deadline that cannot exist yet (what a new subject needs): an
    insert, cheaper than :func:`schedule`'s upsert."""
    fx.insert(DEADLINES, {"_id": deadline_id, **_pending(kind, due_at, subject, payload)})


def cancel(fx: Effects, deadline_id: str, now: datetime) -> None:
    """Cancel a pending deadline (nothing happens if it fired or does not exist)."""
    fx.update(
        DEADLINES,
        {"_id": deadline_id, "status": PENDING},
        {"$set": {"status": CANCELLED, "cancelled_at": now}},
    )


def cancel_subject(fx: Effects, subject: str, now: datetime) -> None:
    """Cancel every pending deadline of a subject (e.g. a closed case)."""
    fx.update(
        DEADLINES,
        {"subject": subject, "status": PENDING},
        {"$set": {"status": CANCELLED, "cancelled_at": now}},
        many=True,
    )


DeadlineBatch = Callable[[Sequence[Doc]], Awaitable[Decision[None]]]
CLAIM_BATCH = 100  # due deadlines claimed and fired together


class BatchScheduler:
    """Claims due deadlines in batches and fires each batch as one unit of work.

    A claim is three commands for up to ``CLAIM_BATCH`` deadlines: read the due ones
    whose lease is free, lease them all with one conditional ``update_many`` (a token
    tells which this replica won), read those back. ``handle`` gets them in due order and
    decides; the unit of work commits its effects together with each fired deadline's
    ``status: fired`` — conditional on this replica still holding the lease, so a replica
    that stalled past its lease while another took over decides again and finds it gone:
    the effect happens once. A deadline the handler refuses or fails on is given back and
    tried again after the lease.
    """

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        uow: UnitOfWork,
        handle: DeadlineBatch,
        *,
        lease: timedelta = timedelta(seconds=30),
        tick: float = 0.5,
        owner: str | None = None,
        batch: int = CLAIM_BATCH,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.col = db[DEADLINES]
        self.uow = uow
        self.handle = handle
        self.lease = lease
        self.tick = tick
        self.owner = owner or f"scheduler-{uuid.uuid4().hex[:8]}"
        self.batch = batch
        self.clock = clock
        self._stop = asyncio.Event()

    async def claim(self, now: datetime) -> list[Doc]:
        """Lease up to ``batch`` due deadlines nobody holds; those this replica won.

        Every query is one an index answers on any server: the due ones by (status,
        due_at), a lease held by another replica skipped here rather than in the query
        (a ``$or`` of free leases made SecantusDB scan the collection), the leases taken by
        ``_id`` one by one in one command, conditional on the lease as it was read.
        """
        cursor = self.col.find(due_filter(now)).sort("due_at", 1).limit(2 * self.batch)
        free = [
            d
            async for d in cursor
            if d.get("lease_until") is None or _aware(d["lease_until"]) < now
        ][: self.batch]
        if not free:
            return []
        token = uuid.uuid4().hex
        lease = {"lease_owner": self.owner, "lease_until": now + self.lease, "lease_token": token}
        await self.col.bulk_write(
            [
                UpdateOne(
                    {"_id": d["_id"], "status": PENDING, "lease_until": d.get("lease_until")},
                    {"$set": lease},
                )
                for d in free
            ],
            ordered=False,
        )
        cursor = self.col.find({"_id": {"$in": [d["_id"] for d in free]}})
        won = [d async for d in cursor if d.get("lease_token") == token]
        return sorted(won, key=lambda d: _aware(d["due_at"]))

    async def fire_due(self) -> int:
        """Claim and fire one batch of due deadlines; how many fired."""
        now = self.clock()
        claimed = await self.claim(now)
        if not claimed:
            return 0
        first = True

        async def decide(docs: Sequence[Doc]) -> Decision[None]:
            nonlocal first
            if not first:  # decided again or split: keep only what this replica still holds
                held = {
                    d["_id"]
                    async for d in self.col.find(
                        {
                            "_id": {"$in": [d["_id"] for d in docs]},
                            "status": PENDING,
                            "lease_owner": self.owner,
                        },
                        {"_id": 1},
                    )
                }
            else:
                held = {d["_id"] for d in docs}
            first = False
            mine = [d for d in docs if d["_id"] in held]
            inner = await self.handle(mine) if mine else Decision[None]()
            out: Decision[None] = Decision(inner.effects)
            fired_at = self.clock()
            for i, doc in enumerate(docs):
                if doc["_id"] not in held:
                    out.refuse(i, LeaseLost(str(doc["_id"])))
                    continue
                outcome = inner.outcomes.get(mine.index(doc))
                if isinstance(outcome, Exception):
                    out.refuse(i, outcome)
                    continue
                out.effects.update(
                    DEADLINES,
                    {"_id": doc["_id"], "status": PENDING, "lease_owner": self.owner},
                    {"$set": {"status": FIRED, "fired_at": fired_at, "fired_by": self.owner}},
                    must_match=True,
                )
                out.done(i, None)
            return out

        outcomes = await self.uow.run(claimed, decide)
        fired = 0
        retry_at = self.clock() + self.lease
        for doc, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, LeaseLost):
                log.info("deadline taken over by another replica", extra={"deadline": doc["_id"]})
            elif isinstance(outcome, Exception):
                log.warning(
                    "deadline handler failed; will retry",
                    extra={"deadline": doc["_id"], "error": repr(outcome)},
                )
                await self.col.update_one(
                    {"_id": doc["_id"], "status": PENDING, "lease_owner": self.owner},
                    {"$set": {"lease_owner": None, "lease_until": retry_at}},
                )
            else:
                fired += 1
        return fired

    async def run(self) -> None:
        """Fire due deadlines every ``tick`` seconds (at once again while batches are full)
        until ``stop()``."""
        while not self._stop.is_set():
            fired = 0
            try:
                fired = await self.fire_due()
            except Exception as exc:  # database down: keep trying
                log.warning("deadline scan failed", extra={"error": repr(exc)})
            if fired >= self.batch:
                continue
            try:
                await asyncio.wait_for(self._stop.wait(), self.tick)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Ask ``run()`` to return after the batch in hand."""
        self._stop.set()
