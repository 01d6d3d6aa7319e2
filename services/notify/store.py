"""Notify's own collections — deliveries, submitter contacts, cases it heard of,
preferences — and the only module that touches them: typed reads, and writes as effects of
a unit of work (``tongxin.runtime.uow``). Claims are the exception: a claim is its own
write, acknowledged before the attempt it allows (at most once).

Deliveries only accumulate, so no query on a hot path may cost more as they do. The shapes
here are chosen for SecantusDB, whose planner is naive (MongoDB serves all of them from an
index too). It runs a filter of several clauses by the first clause an index serves and
checks the rest on what that finds, but its ``explain`` shows only simpler shapes, and no
update's filter at all. So:

* a read of given documents filters on ``_id`` alone (``$in`` a batch's ids), and a
  condition the caller has on them (a claim's token) is checked on what comes back: the
  plan then shows the primary key, and a test can hold it there;
* a batch's deliveries by event: ``$in`` on ``event_id``, the first field of the unique
  index (served by it; one query per event measured 2–3 times slower);
* the resume sweep: one query per open status, equality on ``status`` and a range on
  ``lease_until``, the ``resumable`` index's two fields (a ``$in`` on the status is not
  served by that index: it read every open delivery to find the few abandoned ones);
* a delivery write (claims, hand-backs, outcomes) filters on ``_id`` first — one id, or
  ``$in`` a chunk's ids — then plain conditions, so the clause SecantusDB finds its
  documents by is the primary key; never a top-level ``$or`` nor a ``findAndModify``
  (both scan the collection). Measured, as ``explain`` cannot show it: an ``update_many``
  by ``_id $in`` plus conditions costs the same on 2,000 and 100,000 deliveries, and less
  than half a ``bulk_write`` of one conditional ``UpdateOne`` per id.

``tests/integration/notify/test_query_plans.py`` explains each read's filter.

Contacts and cases are kept a window after their request closed and at most a cap after
they were stored (``domain.kept.Retention``, docs/operations.md "Retention"): the retention
sweeper deletes them (:func:`kept_expiries`), and neither a read nor the contacts kept in
memory hand one out past its window.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.notify.domain.delivery import OPEN_STATUSES, Delivery, DeliveryQuery, Status, Take
from services.notify.domain.kept import Contact, KnownCase, Retention
from services.notify.domain.plan import SavedPreference
from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.retention import Expiry
from tongxin.runtime.scheduler import DEADLINE_INDEXES
from tongxin.runtime.uow import Effects

DELIVERIES = "deliveries"
CONTACTS = "contacts"
CASES = "cases"
PREFERENCES = "preferences"
CONTACTS_KEPT = 20_000  # submitter contacts kept in memory
PREFERENCES_READ_MAX = 5_000  # preferences kept in memory (more: read per batch)

INDEXES = [
    # at most once per (event, recipient, channel) — the ``_id`` encodes the same triple;
    # this index also serves a redelivered batch's look-up of its events' deliveries
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
    # retention: the closed ones by when they closed. One entry per request in each (not
    # partial on ``$exists``: SecantusDB's planner cannot tell that ``closed_at < t``
    # implies it, and scans); a request's deliveries carry five indexes each.
    IndexSpec(CONTACTS, [("closed_at", 1)], name="closed"),
    IndexSpec(CASES, [("closed_at", 1)], name="closed"),
    *DEADLINE_INDEXES,
]


def delivery_expiries(window: timedelta) -> list[Expiry]:
    """Sent and failed deliveries serve no one ``window`` after their last attempt's lease
    (the ``resumable`` index: equality on the status, a range on ``lease_until``, which
    every delivery has and its last claim set just before its outcome)."""
    return [
        Expiry(DELIVERIES, "lease_until", window, {"status": s.value})
        for s in (Status.SENT, Status.FAILED)
    ]


def kept_expiries(retention: Retention) -> list[Expiry]:
    """Contacts and cases serve no one ``after_close`` after their request closed (the
    ``closed`` index), nor ``cap`` after they were stored (in insertion order, no
    index: they are stored in that order; one stored before ``stored_at`` existed is timed
    by its ``updated_at``).

    A submitter's preference (``submitter:<request id>``, set after notify kept the contact)
    serves no one once that contact is gone, at the latest ``cap`` after it was stored —
    so ``cap`` after its own last change (few: a scan of a small collection)."""
    return [
        *(
            rule
            for col in (CONTACTS, CASES)
            for rule in (
                Expiry(col, "closed_at", retention.after_close),
                Expiry(col, "stored_at", retention.cap, oldest_first=True, fallback="updated_at"),
            )
        ),
        Expiry(PREFERENCES, "updated_at", retention.cap, {"_id": {"$regex": "^submitter:"}}),
    ]


def _ids(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# — the filters of the hot paths (module level: the query-plan test explains them) —


def by_ids(ids: Iterable[str]) -> Doc:
    """These documents, by primary key (nothing else in the filter: see the module)."""
    return {"_id": {"$in": list(ids)}}


def of_events(event_ids: Iterable[str]) -> Doc:
    """Every delivery of these events (the unique index's first field)."""
    return {"event_id": {"$in": list(event_ids)}}


RESUMABLE_ORDER = [("lease_until", 1)]  # the oldest abandoned first


def resumable_filter(status: Status, now: datetime) -> Doc:
    """Deliveries in ``status`` whose lease ran out (the ``resumable`` index: equality on
    its first field, a range on its second)."""
    return {"status": status.value, "lease_until": {"$lt": now}}


def claim_filter(ids: Sequence[str], take: Take, owner: str, now: datetime) -> Doc:
    """The deliveries among ``ids`` still as ``take`` expects (``_id`` first: see the
    module)."""
    filt: Doc = by_ids(ids)
    if take is Take.PENDING:
        filt["status"] = Status.PENDING.value
    elif take is Take.OWN_RETRY:
        filt |= {"status": Status.RETRYING.value, "owner": owner}
    else:
        filt |= {
            "status": {"$in": [s.value for s in OPEN_STATUSES]},
            "lease_until": {"$lt": now},
        }
    return filt


class NotifyStore:
    """Reads and writes of notify's collections."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        preferences_ttl: float = 2.0,
        retention: Retention | None = None,
    ) -> None:
        self.deliveries = db[DELIVERIES]
        self.contacts_col = db[CONTACTS]
        self.cases_col = db[CASES]
        self.preferences_col = db[PREFERENCES]
        # None: contacts and cases never expire (tests of other things)
        self.retention = retention
        # Kept in memory to save reads. A request's contact never changes once written but
        # for its close (bounded, least recently used first out), each with the time until
        # which it may be used unread (``Retention.fresh_until``: no copy outlives the
        # contact's window, whichever replica heard of the close). Preferences are read
        # whole and kept ``preferences_ttl`` seconds: a change through this process applies
        # at once, one through another replica within that time.
        self._contacts: OrderedDict[str, tuple[Contact, datetime]] = OrderedDict()
        self._preferences: dict[str, SavedPreference] = {}
        self._preferences_at = -1e9
        self._preferences_many = False
        self.preferences_ttl = preferences_ttl

    # — what a batch of events needs (one query per collection) —

    async def contacts(
        self, request_ids: Iterable[str], now: datetime | None = None
    ) -> dict[str, Contact]:
        """The kept submitter contacts of these requests, none past its window (one query
        for those not in memory, or in memory longer than they may be used unread)."""
        now = now or datetime.now(UTC)
        ids = _ids(request_ids)
        found: dict[str, Contact] = {}
        for i in ids:
            kept = self._contacts.get(i)
            if kept is None:
                continue
            if now < kept[1]:
                found[i] = kept[0]
                self._contacts.move_to_end(i)
            else:
                del self._contacts[i]
        missing = [i for i in ids if i not in found]
        if missing:
            async for doc in self.contacts_col.find({"_id": {"$in": missing}}):
                contact = Contact.from_doc(doc)
                if self._expired(doc, now):
                    continue  # the sweeper has not come by yet
                self.remember(contact, now)
                found[contact.request_id] = contact
        return found

    def remember(self, contact: Contact, now: datetime) -> None:
        """Keep a contact in memory (once written or read at ``now``)."""
        until = datetime.max.replace(tzinfo=UTC)
        if self.retention is not None:
            until = self.retention.fresh_until(contact.stored_at, contact.closed_at, now)
        self._contacts[contact.request_id] = (contact, until)
        self._contacts.move_to_end(contact.request_id)
        while len(self._contacts) > CONTACTS_KEPT:
            self._contacts.popitem(last=False)

    def _expired(self, doc: Doc, now: datetime) -> bool:
        """Whether a contact or case read at ``now`` is past its window."""
        if self.retention is None:
            return False
        stored = doc.get("stored_at") or doc.get("updated_at")
        return self.retention.expired(stored, doc.get("closed_at"), now)

    async def cases(
        self, case_ids: Iterable[str], now: datetime | None = None
    ) -> dict[str, KnownCase]:
        """The cases among ``case_ids`` notify heard of, none past its window (one
        query)."""
        now = now or datetime.now(UTC)
        ids = _ids(case_ids)
        if not ids:
            return {}
        return {
            d["_id"]: KnownCase.from_doc(d)
            async for d in self.cases_col.find({"_id": {"$in": ids}})
            if not self._expired(d, now)
        }

    async def preferences(self, recipients: Iterable[str]) -> dict[str, SavedPreference]:
        """Stored preferences of these recipients, by recipient id."""
        ids = _ids(recipients)
        if not ids:
            return {}
        if self._preferences_many:  # too many to keep: read those asked for
            cursor = self.preferences_col.find({"_id": {"$in": ids}})
            return {d["_id"]: SavedPreference.from_doc(d) async for d in cursor}
        if time.monotonic() - self._preferences_at > self.preferences_ttl:
            # all of them: few recipients set one, and one read serves every batch
            cursor = self.preferences_col.find({}).limit(PREFERENCES_READ_MAX)
            found = {d["_id"]: SavedPreference.from_doc(d) async for d in cursor}
            if len(found) >= PREFERENCES_READ_MAX:
                self._preferences_many = True
                return {i: found[i] for i in ids if i in found} | await self.preferences(
                    [i for i in ids if i not in found]
                )
            self._preferences, self._preferences_at = found, time.monotonic()
        return {i: self._preferences[i] for i in ids if i in self._preferences}

    def forget_preferences(self) -> None:
        """A preference changed through this process: read them again at the next batch."""
        self._preferences_at = -1e9

    async def deliveries_of_events(self, event_ids: Iterable[str]) -> list[Delivery]:
        """Every delivery planned for these events (one query)."""
        ids = _ids(event_ids)
        if not ids:
            return []
        return [Delivery.from_doc(d) async for d in self.deliveries.find(of_events(ids))]

    async def deliveries_by_id(self, ids: Iterable[str]) -> dict[str, Delivery]:
        """These deliveries (one query)."""
        wanted = _ids(ids)
        if not wanted:
            return {}
        cursor = self.deliveries.find(by_ids(wanted))
        return {d["_id"]: Delivery.from_doc(d) async for d in cursor}

    # — what notify keeps from events, as effects —

    def save_contact(self, fx: Effects, contact: Contact, now: datetime) -> None:
        """Keep the submitter's contact (only notify keeps it) for later messages; its
        ``stored_at`` is set once, by the write that creates it."""
        fx.update(
            CONTACTS,
            {"_id": contact.request_id},
            {"$set": {**contact.fields(), "updated_at": now}, "$setOnInsert": {"stored_at": now}},
            upsert=True,
        )
        fx.on_commit(lambda: self.remember(replace(contact, stored_at=now), now))

    def save_case(self, fx: Effects, case: KnownCase, now: datetime) -> None:
        """Remember a case as it is now: its request, units, community and tier (and,
        once, when it was first stored)."""
        fx.update(
            CASES,
            {"_id": case.case_id},
            {"$set": {**case.fields(), "updated_at": now}, "$setOnInsert": {"stored_at": now}},
            upsert=True,
        )

    def mark_closed(self, fx: Effects, request_id: str, now: datetime) -> None:
        """The request closed: its contact and case are kept ``after_close`` from ``now``
        (the first close counts; one not kept, or deleted already, is not brought back)."""
        open_: Doc = {"closed_at": {"$exists": False}}
        fx.update(CONTACTS, {"_id": request_id, **open_}, {"$set": {"closed_at": now}})
        fx.update(
            CASES, {"request_id": request_id, **open_}, {"$set": {"closed_at": now}}, many=True
        )

        def closed() -> None:
            kept = self._contacts.get(request_id)
            if kept is not None and kept[0].closed_at is None:
                self.remember(replace(kept[0], closed_at=now), now)

        fx.on_commit(closed)

    # — deliveries, as effects —

    def insert_delivery(self, fx: Effects, d: Delivery) -> None:
        """Record a planned delivery (its unique index refuses a second one)."""
        fx.insert(DELIVERIES, d.to_doc())

    def reopen(self, fx: Effects, d: Delivery) -> None:
        """A failed delivery goes back to ``pending`` (its event was replayed)."""
        fx.update(
            DELIVERIES,
            {"_id": d.id, "status": Status.FAILED.value},
            {
                "$set": {
                    "status": Status.PENDING.value,
                    "lease_until": d.lease_until,
                    "updated_at": d.updated_at,
                }
            },
        )

    def release(self, fx: Effects, d: Delivery) -> None:
        """A deferred delivery whose quiet hours ended becomes ``pending``."""
        fx.update(
            DELIVERIES,
            {"_id": d.id, "status": Status.DEFERRED.value},
            {
                "$set": {
                    "status": Status.PENDING.value,
                    "lease_until": d.lease_until,
                    "updated_at": d.updated_at,
                }
            },
        )

    def _outcome(self, fx: Effects, did: str, owner: str, fields: Doc) -> None:
        """The outcome of the attempt ``owner`` holds (``sending``): only its taker writes it."""
        fx.update(
            DELIVERIES,
            {"_id": did, "status": Status.SENDING.value, "owner": owner},
            {"$set": fields},
        )

    def record_sent(
        self, fx: Effects, did: str, owner: str, provider_id: str | None, now: datetime
    ) -> None:
        """The delivery went through."""
        fields = {
            "status": Status.SENT.value,
            "sent_at": now,
            "provider_id": provider_id,
            "updated_at": now,
        }
        self._outcome(fx, did, owner, fields)

    def record_failed(self, fx: Effects, did: str, owner: str, error: str, now: datetime) -> None:
        """The delivery failed after its last attempt (a DLQ replay may try it again)."""
        fields = {
            "status": Status.FAILED.value,
            "last_error": error[:500],
            "failed_at": now,
            "updated_at": now,
        }
        self._outcome(fx, did, owner, fields)

    def record_retrying(self, fx: Effects, d: Delivery, owner: str) -> None:
        """The attempt failed and nothing was delivered; ``d`` says when it is tried again
        (by its holder) and until when it is held."""
        fields = {
            "status": Status.RETRYING.value,
            "last_error": d.last_error,
            "next_attempt_at": d.next_attempt_at,
            "lease_until": d.lease_until,
            "updated_at": d.updated_at,
        }
        self._outcome(fx, d.id, owner, fields)

    # — claims: their own writes, acknowledged before the attempts they allow —

    async def claim(
        self,
        ids: Sequence[str],
        take: Take,
        owner: str,
        lease_until: datetime,
        token: str,
        now: datetime,
    ) -> int:
        """Take these deliveries for an attempt in one write — ``sending``, ``attempts + 1``
        — if each is still as ``take`` expects; how many were taken (``token`` marks
        them: :meth:`claimed` tells which). From here until its outcome is recorded a crash
        leaves a delivery ``sending``, and it is never sent again (at most once)."""
        filt = claim_filter(ids, take, owner, now)
        fields = {
            "status": Status.SENDING.value,
            "owner": owner,
            "lease_until": lease_until,
            "last_attempt_at": now,
            "updated_at": now,
            "claim": token,
        }
        res = await self.deliveries.update_many(filt, {"$set": fields, "$inc": {"attempts": 1}})
        return int(res.modified_count)

    async def claimed(self, ids: Sequence[str], token: str) -> dict[str, Delivery]:
        """Which of ``ids`` the claim marked with ``token`` took, as they are now (read by
        ``_id`` alone, the token checked here: a chunk is a few documents)."""
        cursor = self.deliveries.find(by_ids(ids))
        return {d["_id"]: Delivery.from_doc(d) async for d in cursor if d.get("claim") == token}

    async def hand_back(self, ids: Sequence[str], token: str, error: str, now: datetime) -> None:
        """A claim whose answer was lost (the database went away): nothing was sent, so
        whatever it took goes back to ``retrying``, free for anyone at once."""
        await self.deliveries.update_many(
            {**by_ids(ids), "status": Status.SENDING.value, "claim": token},
            {
                "$set": {
                    "status": Status.RETRYING.value,
                    "last_error": error[:500],
                    "next_attempt_at": now,
                    "lease_until": now,
                    "updated_at": now,
                }
            },
        )

    async def release_held(self, ids: Sequence[str], owner: str, now: datetime) -> None:
        """Deliveries between attempts handed back at once (a clean stop): any replica's
        sweep resumes them."""
        await self.deliveries.update_many(
            {**by_ids(ids), "status": Status.RETRYING.value, "owner": owner},
            {"$set": {"lease_until": now, "updated_at": now}},
        )

    async def resumable(self, now: datetime, limit: int) -> list[Delivery]:
        """Open deliveries nobody holds: planned but never claimed, or between attempts by a
        process whose lease ran out (it died or stalled) — at most ``limit``, those whose
        lease ran out first (one query per open status, each served by its index)."""
        found: list[Delivery] = []
        for status in OPEN_STATUSES:
            cursor = self.deliveries.find(resumable_filter(status, now))
            found += [Delivery.from_doc(d) async for d in cursor.sort(RESUMABLE_ORDER).limit(limit)]
        found.sort(key=lambda d: d.lease_until or now)
        return found[:limit]

    # — preferences —

    def put_preference(self, fx: Effects, saved: SavedPreference) -> None:
        """Replace a recipient's preference."""
        doc = saved.to_doc()
        fx.update(
            PREFERENCES,
            {"_id": saved.recipient},
            {"$set": {k: v for k, v in doc.items() if k != "_id"}},
            upsert=True,
        )
        fx.on_commit(self.forget_preferences)

    async def preference(self, recipient: str) -> SavedPreference | None:
        """One recipient's stored preference."""
        doc = await self.preferences_col.find_one({"_id": recipient})
        return SavedPreference.from_doc(doc) if doc is not None else None

    # — the API —

    async def list(self, query: DeliveryQuery, limit: int) -> list[Delivery]:
        """Deliveries matching ``query``, oldest first."""
        filt: dict[str, Any] = {}
        if query.request_id:
            filt["request_id"] = query.request_id
        if query.recipients is not None:
            recipients = list(query.recipients)
            filt["recipient"] = recipients[0] if len(recipients) == 1 else {"$in": recipients}
        if query.status:
            filt["status"] = query.status
        if query.channel:
            filt["channel"] = query.channel
        cursor = self.deliveries.find(filt).sort("created_at", 1).limit(limit)
        return [Delivery.from_doc(d) async for d in cursor]
