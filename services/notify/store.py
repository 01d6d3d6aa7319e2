"""Notify's own collections: deliveries, submitter contacts, cases it heard of, preferences."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from tongxin.runtime.mongo import Doc, IndexSpec, defer_insert, update_at_end
from tongxin.runtime.scheduler import DEADLINE_INDEXES

DELIVERIES = "deliveries"
CONTACTS = "contacts"
CASES = "cases"
PREFERENCES = "preferences"
CONTACTS_KEPT = 20_000  # submitter contacts kept in memory
PREFERENCES_READ_MAX = 5_000  # preferences kept in memory (more: read per event)

# Delivery statuses. ``sending`` is the only one a crash can leave uncertain: it is never
# sent again (at most once); ``pending``/``retrying`` are known undelivered and resumable.
PENDING, DEFERRED, SENDING, RETRYING, SENT, FAILED = (
    "pending",
    "deferred",
    "sending",
    "retrying",
    "sent",
    "failed",
)
OPEN_STATUSES = (PENDING, RETRYING)

# Filters are kept to ``_id`` plus plain equalities (no top-level ``$or``): the database
# then finds the document by its primary key instead of scanning the collection.
INDEXES = [
    # at most once per (event, recipient, channel) — the ``_id`` encodes the same triple;
    # this index also serves a redelivered event's look-up of its deliveries
    IndexSpec(
        DELIVERIES,
        [("event_id", 1), ("recipient", 1), ("channel", 1)],
        unique=True,
        name="once_per_event_recipient_channel",
    ),
    IndexSpec(DELIVERIES, [("request_id", 1), ("created_at", 1)]),  # the API, by request
    IndexSpec(DELIVERIES, [("recipient", 1), ("created_at", 1)]),  # the API, by recipient
    # the resume sweep: open deliveries whose lease ran out (and the API's status filter)
    IndexSpec(DELIVERIES, [("status", 1), ("lease_until", 1)], name="resumable"),
    IndexSpec(CASES, [("request_id", 1)]),
    *DEADLINE_INDEXES,
]


def delivery_id(event_id: str, recipient: str, channel: str) -> str:
    """Stable id of one delivery."""
    return f"{event_id}|{recipient}|{channel}"


def _now() -> datetime:
    return datetime.now(UTC)


class NotifyStore:
    """Reads and writes of notify's collections."""

    def __init__(self, db: AsyncDatabase[Doc], preferences_ttl: float = 2.0) -> None:
        self.deliveries = db[DELIVERIES]
        self.contacts = db[CONTACTS]
        self.cases = db[CASES]
        self.preferences = db[PREFERENCES]
        # Kept in memory to save a read per event. A request's contact never changes once
        # kept (bounded, least recently used first out). Preferences are read whole and
        # kept ``preferences_ttl`` seconds: a change through this process applies at once,
        # one through another replica within that time.
        self._contacts: OrderedDict[str, Doc] = OrderedDict()
        self._preferences: dict[str, Doc] = {}
        self._preferences_at = -1e9
        self._preferences_many = False
        self.preferences_ttl = preferences_ttl

    # — what notify keeps from events —

    async def save_contact(
        self, session: AsyncClientSession | None, request_id: str, contact: Doc
    ) -> None:
        """Keep the submitter's contact (only notify keeps it) for later messages."""
        fields = {**contact, "updated_at": _now()}
        # with the transaction's other writes at its end: read back from memory meanwhile
        await update_at_end(
            session, self.contacts, {"_id": request_id}, {"$set": fields}, upsert=True
        )
        self._remember_contact({"_id": request_id, **fields})

    def _remember_contact(self, doc: Doc) -> None:
        self._contacts[doc["_id"]] = doc
        self._contacts.move_to_end(doc["_id"])
        while len(self._contacts) > CONTACTS_KEPT:
            self._contacts.popitem(last=False)

    async def contact(self, session: AsyncClientSession | None, request_id: str) -> Doc | None:
        """The kept submitter contact of a request."""
        kept = self._contacts.get(request_id)
        if kept is not None:
            self._contacts.move_to_end(request_id)
            return dict(kept)
        doc = await self.contacts.find_one({"_id": request_id}, session=session)
        if doc is not None:
            self._remember_contact(doc)
        return doc

    async def save_case(self, session: AsyncClientSession | None, case_id: str, doc: Doc) -> None:
        """Remember a routed case: its request, units, community and tier (at the end of the
        transaction, with its other writes: the caller does not read it back)."""
        update = {"$set": {**doc, "updated_at": _now()}}
        await update_at_end(session, self.cases, {"_id": case_id}, update, upsert=True)

    async def add_case_unit(
        self, session: AsyncClientSession | None, case_id: str, unit: str
    ) -> None:
        """An escalation brought another unit onto the case."""
        await self.cases.update_one(
            {"_id": case_id}, {"$addToSet": {"units": unit}}, session=session
        )

    async def case(self, session: AsyncClientSession | None, case_id: str) -> Doc | None:
        """A case notify heard of."""
        return await self.cases.find_one({"_id": case_id}, session=session)

    # — preferences —

    async def preferences_of(
        self, session: AsyncClientSession | None, recipients: Iterable[str]
    ) -> dict[str, Doc]:
        """Stored preferences of these recipients, by recipient id."""
        ids = list(recipients)
        if not ids:
            return {}
        if self._preferences_many:  # too many to keep: read per event
            cursor = self.preferences.find({"_id": {"$in": ids}}, session=session)
            return {d["_id"]: d async for d in cursor}
        if time.monotonic() - self._preferences_at > self.preferences_ttl:
            # all of them: few recipients set one, and one read serves every event
            cursor = self.preferences.find({}, session=session).limit(PREFERENCES_READ_MAX)
            found = {d["_id"]: d async for d in cursor}
            if len(found) >= PREFERENCES_READ_MAX:
                self._preferences_many = True
                return {i: found[i] for i in ids if i in found} | await self.preferences_of(
                    session, [i for i in ids if i not in found]
                )
            self._preferences, self._preferences_at = found, time.monotonic()
        return {i: self._preferences[i] for i in ids if i in self._preferences}

    async def put_preference(self, recipient: str, doc: Doc) -> Doc:
        """Replace a recipient's preference."""
        full = {**doc, "_id": recipient, "updated_at": _now()}
        await self.preferences.replace_one({"_id": recipient}, full, upsert=True)
        self._preferences_at = -1e9  # read again at the next event
        return full

    async def preference(self, recipient: str) -> Doc | None:
        """One recipient's stored preference."""
        return await self.preferences.find_one({"_id": recipient})

    # — deliveries —

    async def insert_deliveries(self, session: AsyncClientSession, docs: Sequence[Doc]) -> None:
        """Record planned deliveries inside the handling transaction (at its end, with its
        other inserts: nothing reads them back before the commit)."""
        rest = [d for d in docs if not defer_insert(session, self.deliveries, d)]
        if rest:
            await self.deliveries.insert_many(rest, session=session)

    async def open_deliveries(
        self, event_id: str, lease: timedelta, *, reopen_failed: bool
    ) -> list[Doc]:
        """An event's deliveries that may be (re)sent now: ``_id``, ``status``, ``channel``."""
        if reopen_failed:
            now = _now()
            await self.deliveries.update_many(
                {"event_id": event_id, "status": FAILED},
                {"$set": {"status": PENDING, "lease_until": now + lease, "updated_at": now}},
            )
        cursor = self.deliveries.find(
            {"event_id": event_id, "status": {"$in": list(OPEN_STATUSES)}},
            {"_id": 1, "status": 1, "channel": 1},
        )
        return [d async for d in cursor]

    async def resumable(self, now: datetime, limit: int) -> list[Doc]:
        """Open deliveries nobody holds: planned but never claimed, or between attempts by a
        process whose lease ran out (it died or stalled) — ``_id``, ``status``, ``channel``."""
        cursor = self.deliveries.find(
            {"status": {"$in": list(OPEN_STATUSES)}, "lease_until": {"$lt": now}},
            {"_id": 1, "status": 1, "channel": 1},
        ).limit(limit)
        return [d async for d in cursor]

    async def claim_attempt(
        self,
        did: str,
        status: str,
        owner: str,
        lease_until: datetime,
        *,
        held_by: str | None = None,
        known: Doc | None = None,
    ) -> Doc | None:
        """Take a delivery and mark the attempt in one write: ``status`` -> ``sending``.

        ``held_by``: a ``retrying`` delivery is taken by its own holder (``held_by`` = the
        owner), else only once its lease ran out. ``pending`` and ``deferred`` ones have no
        holder. Returns the document, or None when it is not (or no longer) in ``status``:
        sent, failed, uncertain, or taken by another process. From here until the outcome is
        recorded a crash leaves it ``sending``, and it is never sent again (at most once).

        The take is a conditional ``update_one`` on ``_id``, not ``findAndModify``:
        SecantusDB answers ``findAndModify`` by scanning the whole collection (about 16 µs
        per delivery ever recorded — 100 ms at a few thousand), an update by primary key in
        about a millisecond. ``known``: the document as this process last wrote it (just
        planned, or its own previous attempt); the taken one is then derived from it instead
        of read back. Once taken, only the taker writes it, so the read-back is exact.
        """
        now = _now()
        filt: Doc = {"_id": did, "status": status}
        if status == RETRYING:
            if held_by is not None:
                filt["owner"] = held_by
            else:
                filt["lease_until"] = {"$lt": now}
        fields: Doc = {
            "status": SENDING,
            "owner": owner,
            "lease_until": lease_until,
            "last_attempt_at": now,
            "updated_at": now,
        }
        res = await self.deliveries.update_one(filt, {"$set": fields, "$inc": {"attempts": 1}})
        if getattr(res, "modified_count", 0) != 1:
            return None
        if known is not None:
            return {**known, **fields, "attempts": int(known.get("attempts") or 0) + 1}
        return await self.deliveries.find_one({"_id": did})

    async def mark_retrying(
        self, did: str, owner: str, error: str, retry_at: datetime, lease_until: datetime
    ) -> None:
        """The attempt failed and nothing was delivered; this process tries again at
        ``retry_at``, and any process may after ``lease_until``."""
        await self.deliveries.update_one(
            {"_id": did, "status": SENDING, "owner": owner},
            {
                "$set": {
                    "status": RETRYING,
                    "last_error": error[:500],
                    "next_attempt_at": retry_at,
                    "lease_until": lease_until,
                    "updated_at": _now(),
                }
            },
        )

    async def release(self, did: str, owner: str) -> None:
        """Hand a delivery between attempts back at once (a clean stop): any replica resumes it."""
        await self.deliveries.update_one(
            {"_id": did, "status": RETRYING, "owner": owner},
            {"$set": {"lease_until": _now(), "updated_at": _now()}},
        )

    async def mark_sent(
        self, session: AsyncClientSession, did: str, provider_id: str | None
    ) -> None:
        """The delivery went through (at the end of the transaction, with its event)."""
        now = _now()
        fields = {"status": SENT, "sent_at": now, "provider_id": provider_id, "updated_at": now}
        await self._finish(session, did, fields)

    async def _finish(self, session: AsyncClientSession, did: str, fields: Doc) -> None:
        """Record the outcome of the attempt this process holds (``sending``)."""
        flt = {"_id": did, "status": SENDING}
        await update_at_end(session, self.deliveries, flt, {"$set": fields})

    async def mark_failed(self, session: AsyncClientSession, did: str, error: str) -> None:
        """The delivery failed after its last attempt (a DLQ replay may try it again)."""
        now = _now()
        fields = {"status": FAILED, "last_error": error[:500], "failed_at": now, "updated_at": now}
        await self._finish(session, did, fields)

    async def get(self, did: str) -> Doc | None:
        """One delivery."""
        return await self.deliveries.find_one({"_id": did})

    async def list(self, filt: dict[str, Any], limit: int) -> list[Doc]:
        """Deliveries matching ``filt``, oldest first."""
        return [d async for d in self.deliveries.find(filt).sort("created_at", 1).limit(limit)]
