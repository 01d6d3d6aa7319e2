"""The only module that touches intake's collections: requests, idempotency keys, id
counters (and, for retention, the request's outbox records). Reads are typed and
batch-shaped (one query for a whole batch); writes are effects of a unit of work."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.intake.domain.requests import StoredRequest
from tongxin.runtime.logs import redact
from tongxin.runtime.mongo import Doc, IndexSpec
from tongxin.runtime.outbox import OUTBOX
from tongxin.runtime.uow import Effects

REQUESTS = "requests"
IDEMPOTENCY = "idempotency_keys"
COUNTERS = "counters"
ID_BLOCK = 32  # request numbers taken from the day's counter at a time (at least)

INDEXES = [
    IndexSpec(REQUESTS, [("submitted_at", -1), ("_id", -1)], name="newest_first"),
    IndexSpec(REQUESTS, [("status", 1), ("submitted_at", -1)]),
    IndexSpec(REQUESTS, [("community", 1), ("submitted_at", -1)]),
    IndexSpec(REQUESTS, [("compound", 1), ("category", 1), ("submitted_at", -1)]),
    IndexSpec(REQUESTS, [("external.source", 1), ("external.id", 1)]),
    IndexSpec(IDEMPOTENCY, [("expires_at", 1)]),
]

# what retention removes of a request's contact (PIPL: the shortest necessary period)
CONTACT_FIELDS = ("submitter.name", "submitter.phone", "address", "location")


def similar_filter(compound: str, category: str, since: datetime) -> Doc:
    """A place's requests since ``since`` (served by the compound/category/submitted_at
    index; the open ones are picked from them after)."""
    return {"compound": compound, "category": category, "submitted_at": {"$gte": since}}


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class RequestStore:
    """Reads and writes of intake's collections."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.requests = db[REQUESTS]
        self.idempotency = db[IDEMPOTENCY]
        self.counters = db[COUNTERS]
        self._blocks: dict[str, list[int]] = {}  # day key -> [last handed out, block end]
        self._block_lock = asyncio.Lock()

    # — request numbers —

    async def next_numbers(self, day_key: str, n: int) -> list[int]:
        """``n`` numbers of the day, unique across replicas.

        Taken from the day's counter document in blocks (at least ``ID_BLOCK``), so the
        counter costs one round trip per block, not per request. Each replica hands out
        its own block: numbers stay unique, but are not dense (a restart leaves the rest of
        its block unused) and not strictly in submission order across replicas.
        """
        async with self._block_lock:
            out: list[int] = []
            block = self._blocks.get(day_key)
            while len(out) < n:
                if block is None or block[0] >= block[1]:
                    size = max(ID_BLOCK, n - len(out))
                    end = await self._take_block(day_key, size)
                    block = [end - size, end]
                    self._blocks = {day_key: block}  # yesterday's block is done
                block[0] += 1
                out.append(block[0])
            return out

    async def _take_block(self, day_key: str, size: int) -> int:
        """Raise the day's counter by ``size``; the new value (the block's last number).

        Two first allocations of a day race on the upsert: the loser sees a duplicate key
        (or, on some servers, no document) and simply increments again.
        """
        for _ in range(20):
            try:
                doc = await self.counters.find_one_and_update(
                    {"_id": day_key},
                    {"$inc": {"n": size}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            if doc is not None:
                return int(doc["n"])
        raise RuntimeError(f"could not allocate a number for {day_key}")

    # — reads for a batch —

    async def load_many(self, request_ids: Sequence[str]) -> dict[str, StoredRequest]:
        """The stored requests among ``request_ids`` (one query)."""
        ids = list(dict.fromkeys(request_ids))
        if not ids:
            return {}
        return {
            d["_id"]: StoredRequest.from_doc(d)
            async for d in self.requests.find({"_id": {"$in": ids}})
        }

    async def idempotent_answers(self, keys: Sequence[str], now: datetime) -> dict[str, Doc]:
        """Stored answers for Idempotency-Keys (one query), expired ones included: their
        ``expires_at`` says so, and a new answer replaces them."""
        if not keys:
            return {}
        cursor = self.idempotency.find({"_id": {"$in": list(dict.fromkeys(keys))}})
        return {d["_id"]: {**d, "expired": _aware(d["expires_at"]) <= now} async for d in cursor}

    async def similar_open(
        self,
        places: Sequence[tuple[str, str]],
        since: datetime,
        statuses: Sequence[str],
        per_place: int,
    ) -> dict[tuple[str, str], list[Doc]]:
        """Per (compound, category): its newest open requests since ``since``, from its
        newest ``per_place`` (duplicate detection). One query per place, each answered by
        the (compound, category, submitted_at) index: a single query with ``$in`` over the
        places, or a ``$in`` over statuses, makes SecantusDB scan every request."""
        wanted = set(statuses)
        out: dict[tuple[str, str], list[Doc]] = {}
        for compound, category in dict.fromkeys(places):
            cursor = (
                self.requests.find(
                    similar_filter(compound, category, since),
                    {
                        "title": 1,
                        "description": 1,
                        "submitted_at": 1,
                        "duplicate_of": 1,
                        "status": 1,
                    },
                )
                .sort("submitted_at", DESCENDING)
                .limit(per_place)
            )
            out[(compound, category)] = [d async for d in cursor if d.get("status") in wanted]
        return out

    async def external_ids(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (source, event id) of other platforms already made a request (one indexed
        query per pair: other platforms' submissions are few)."""
        found: set[tuple[str, str]] = set()
        for source, event_id in dict.fromkeys(pairs):
            hit = await self.requests.find_one(
                {"external.source": source, "external.id": event_id}, {"_id": 1}
            )
            if hit is not None:
                found.add((source, event_id))
        return found

    # — writes, as effects —

    def insert(self, fx: Effects, req: StoredRequest) -> None:
        """Store a new request."""
        fx.insert(REQUESTS, req.to_doc())

    def save(self, fx: Effects, req: StoredRequest, read_rev: int) -> None:
        """Write a changed request if nobody changed it since it was read at ``read_rev``
        (else the batch is decided again)."""
        req.rev = read_rev + 1
        fx.replace(REQUESTS, {"_id": req.id, "rev": read_rev}, req.to_doc())

    def save_idempotent(
        self,
        fx: Effects,
        key: str,
        fingerprint: str,
        answer: dict[str, Any],
        now: datetime,
        ttl_s: int,
        replacing: datetime | None = None,
    ) -> None:
        """Remember the answer for a key; ``replacing``: the ``expires_at`` of an expired
        answer this one replaces. A concurrent first use of the same key collides on
        ``_id`` (duplicate key: the batch is decided again and replays it)."""
        doc = {
            "_id": key,
            "fingerprint": fingerprint,
            "response": answer,
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl_s),
        }
        if replacing is None:
            fx.insert(IDEMPOTENCY, doc)
        else:
            fx.replace(IDEMPOTENCY, {"_id": key, "expires_at": replacing}, doc)

    # — reads for the API —

    async def get(self, request_id: str) -> StoredRequest | None:
        """One request by id."""
        doc = await self.requests.find_one({"_id": request_id})
        return None if doc is None else StoredRequest.from_doc(doc)

    async def page(self, flt: Doc, limit: int) -> list[Doc]:
        """Requests matching ``flt``, newest first (``_id`` breaks ties), without the
        tracking hash and timeline (list views)."""
        cursor = (
            self.requests.find(flt, {"tracking_hash": 0, "timeline": 0})
            .sort([("submitted_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [d async for d in cursor]

    # — housekeeping —

    async def purge_expired_keys(self, now: datetime) -> int:
        """Delete expired Idempotency-Key answers (they hold tracking codes)."""
        res = await self.idempotency.delete_many({"expires_at": {"$lt": now}})
        return res.deleted_count

    async def purge_contacts(self, cutoff: datetime, now: datetime, limit: int = 500) -> int:
        """Remove contact details of requests closed or withdrawn before ``cutoff``.

        Removed: the submitter's name and phone, the street address and the exact
        location; phone numbers in the free text are masked. Kept, for statistics: every
        other field, the timeline and the ratings. The request's outbox records (the
        ``request.submitted`` carried the contact) are deleted by the relay an hour after
        they were published (``MongoOutbox.keep_sent``), long before this; a request with
        a record still waiting is left for a later sweep. Each request is a conditional
        update: idempotent, safe with several replicas, nothing lost across restarts.
        """
        outbox = self.db[OUTBOX]
        due = {
            "contact_purged_at": {"$exists": False},
            "$or": [
                {"status": "closed", "closed_at": {"$lte": cutoff}},
                {"status": "withdrawn", "withdrawn_at": {"$lte": cutoff}},
            ],
        }
        purged = 0
        cursor = self.requests.find(due, {"title": 1, "description": 1}).limit(limit)
        async for doc in cursor:
            rid = doc["_id"]
            if await outbox.find_one({"sent": False, "keys": rid.encode()}, {"_id": 1}):
                # an event of it not yet published (or its mark not yet written): the next
                # sweep comes back, so none of its records outlives the purge
                continue
            res = await self.requests.update_one(
                {"_id": rid, "contact_purged_at": {"$exists": False}},
                {
                    "$unset": dict.fromkeys(CONTACT_FIELDS, ""),
                    "$set": {
                        "title": redact(str(doc.get("title", ""))),
                        "description": redact(str(doc.get("description", ""))),
                        "contact_purged_at": now,
                    },
                    "$inc": {"rev": 1},
                },
            )
            purged += res.modified_count
        return purged
