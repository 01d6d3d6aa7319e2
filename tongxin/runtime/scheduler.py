"""Durable deadlines: timers in the database, claimed with a lease, fired exactly once.

A service schedules a deadline inside the transaction that creates what it guards
(``schedule``). Every replica runs a :class:`DeadlineScheduler`; a due deadline is
claimed with a lease (a conditional update), and its handler runs the state change
together with ``complete`` in one transaction. ``complete`` only succeeds for the current
lease holder, so if a replica stalls past its lease and another one claims the deadline,
the first one's transaction aborts: the effect happens exactly once, and a restart loses
nothing because nothing lives in memory.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from tongxin.runtime.mongo import Doc, IndexSpec, insert_at_end

log = logging.getLogger(__name__)

DEADLINES = "deadlines"
DEADLINE_INDEXES = [
    IndexSpec(DEADLINES, [("status", 1), ("due_at", 1)], name="due"),
    IndexSpec(DEADLINES, [("subject", 1), ("status", 1)]),
]

PENDING, FIRED, CANCELLED = "pending", "fired", "cancelled"
CLAIM_CANDIDATES = 64  # due deadlines read per claim (those leased by others are skipped)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class LeaseLost(Exception):
    """Another replica holds the deadline now; this one's transaction must abort."""


# A handler gets the deadline document and a ``complete(session)`` to call inside its
# own transaction together with the state change.
Complete = Callable[[AsyncClientSession], Awaitable[None]]
DeadlineHandler = Callable[[Doc, Complete], Awaitable[None]]


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


class DeadlineStore:
    """The ``deadlines`` collection of one service's database."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.col = db[DEADLINES]

    async def schedule(
        self,
        session: AsyncClientSession | None,
        deadline_id: str,
        kind: str,
        due_at: datetime,
        subject: str,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Create (or move) a pending deadline, inside the caller's transaction."""
        await self.col.update_one(
            {"_id": deadline_id},
            {"$set": _pending(kind, due_at, subject, payload)},
            upsert=True,
            session=session,
        )

    async def add(
        self,
        session: AsyncClientSession | None,
        deadline_id: str,
        kind: str,
        due_at: datetime,
        subject: str,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Create a pending deadline that cannot exist yet (what a new subject needs):
        written at the end of the caller's transaction with its other inserts (one
        round trip for all of them) instead of an upsert each."""
        doc: Doc = {"_id": deadline_id, **_pending(kind, due_at, subject, payload)}
        await insert_at_end(session, self.col, doc)

    async def cancel(self, session: AsyncClientSession | None, deadline_id: str) -> bool:
        """Cancel a pending deadline; False when it had already fired or did not exist."""
        res = await self.col.update_one(
            {"_id": deadline_id, "status": PENDING},
            {"$set": {"status": CANCELLED, "cancelled_at": datetime.now(UTC)}},
            session=session,
        )
        return res.modified_count == 1

    async def cancel_subject(self, session: AsyncClientSession | None, subject: str) -> int:
        """Cancel every pending deadline of a subject (e.g. a resolved case)."""
        res = await self.col.update_many(
            {"subject": subject, "status": PENDING},
            {"$set": {"status": CANCELLED, "cancelled_at": datetime.now(UTC)}},
            session=session,
        )
        return res.modified_count

    async def claim_due(self, owner: str, lease: timedelta, now: datetime) -> Doc | None:
        """Claim one due deadline whose lease is free or expired.

        A read of the oldest due ones, then a conditional ``update_one`` on the first free
        one's ``_id`` and the lease it was seen with (another replica's claim in between
        makes it miss, and the next candidate is tried). Not ``findAndModify``: SecantusDB
        answers that by scanning the whole collection, and deadlines only accumulate.
        """
        cursor = (
            self.col.find({"status": PENDING, "due_at": {"$lte": now}})
            .sort("due_at", 1)
            .limit(CLAIM_CANDIDATES)
        )
        for doc in await cursor.to_list():
            held = doc.get("lease_until")
            if held is not None and _aware(held) >= now:
                continue  # another replica is firing it
            until = now + lease
            res = await self.col.update_one(
                {"_id": doc["_id"], "status": PENDING, "lease_until": held},
                {"$set": {"lease_owner": owner, "lease_until": until}},
            )
            if res.modified_count == 1:
                return {**doc, "lease_owner": owner, "lease_until": until}
        return None

    async def complete(self, session: AsyncClientSession, deadline_id: str, owner: str) -> None:
        """Mark fired, only for the lease holder; raises LeaseLost otherwise."""
        res = await self.col.update_one(
            {"_id": deadline_id, "status": PENDING, "lease_owner": owner},
            {"$set": {"status": FIRED, "fired_at": datetime.now(UTC), "fired_by": owner}},
            session=session,
        )
        if res.modified_count != 1:
            raise LeaseLost(deadline_id)

    async def release(self, deadline_id: str, owner: str, retry_at: datetime) -> None:
        """Give a claimed deadline back after its handler failed (it is retried later)."""
        await self.col.update_one(
            {"_id": deadline_id, "status": PENDING, "lease_owner": owner},
            {"$set": {"lease_owner": None, "lease_until": retry_at}},
        )


class DeadlineScheduler:
    """Claims and fires due deadlines of one service, by kind."""

    def __init__(
        self,
        store: DeadlineStore,
        handlers: Mapping[str, DeadlineHandler],
        *,
        lease: timedelta = timedelta(seconds=30),
        tick: float = 0.5,
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.handlers = dict(handlers)
        self.lease = lease
        self.tick = tick
        self.owner = owner or f"scheduler-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self._stop = asyncio.Event()

    async def fire_due(self, limit: int = 100) -> int:
        """Fire up to ``limit`` due deadlines; returns how many this replica fired."""
        fired = 0
        for _ in range(limit):
            doc = await self.store.claim_due(self.owner, self.lease, self.clock())
            if doc is None:
                break
            handler = self.handlers.get(doc["kind"])
            deadline_id = doc["_id"]

            async def complete(session: AsyncClientSession, _id: str = deadline_id) -> None:
                await self.store.complete(session, _id, self.owner)

            try:
                if handler is None:
                    raise LookupError(f"no handler for deadline kind {doc['kind']!r}")
                await handler(doc, complete)
                fired += 1
            except LeaseLost:
                log.info("deadline taken over by another replica", extra={"deadline": deadline_id})
            except Exception as exc:
                log.warning(
                    "deadline handler failed; will retry",
                    extra={"deadline": deadline_id, "error": repr(exc)},
                )
                await self.store.release(deadline_id, self.owner, self.clock() + self.lease)
        return fired

    async def run(self) -> None:
        """Fire due deadlines every ``tick`` seconds until ``stop()``."""
        while not self._stop.is_set():
            try:
                await self.fire_due()
            except Exception as exc:  # database down: keep trying
                log.warning("deadline scan failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(self._stop.wait(), self.tick)
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Ask ``run()`` to return after the deadline in hand."""
        self._stop.set()
