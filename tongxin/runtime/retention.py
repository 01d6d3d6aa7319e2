"""Bounded storage: what grows with traffic is deleted once it serves no one.

Each :class:`Expiry` names a collection, the time field its window starts at (``since``)
and the window; a :class:`Sweeper` per service process deletes what has outlived it every
``interval`` seconds and keeps ``tongxin_db_documents{collection}`` at the size of each of
the service's collections (``estimatedDocumentCount``: collection metadata, no scan). The
windows, and why each is what it is, are in docs/operations.md ("Retention").

A sweeper rather than TTL indexes, on both servers: SecantusDB honours TTL indexes too, but
an index costs every insert (measured on processed-event marks, 20 per transaction: 6,300–
7,000 marks/s with the ``_id`` index only, 4,100–5,000 with one on their time), so what is
written on the hot path keeps the indexes it has and is found either

* through an index the collection has anyway (``where`` equalities, then a range on
  ``since``: deadlines by their ``due`` index, deliveries by ``resumable``; a field the index
  lacks is checked on what the equalities find), or
* with ``oldest_first``, with none at all: read in insertion order (a filter-less ``find``
  returns documents in the order they were stored, and stops at its limit) and deleted by
  ``_id`` up to the first one still inside its window. The cost is what is deleted plus one
  batch; a document stored out of time order waits until the ones before it expire (at
  most one window longer). A document stored before its collection had ``since`` is
  timed by ``fallback`` (another time field it has) instead.

Deletes go by ``_id`` in batches, so the first sweep over a year of data is many short
commands, not one long one. Replicas may sweep at once: a delete is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Gauge
from pymongo.asynchronous.database import AsyncDatabase

from tongxin.runtime.mongo import Doc

log = logging.getLogger(__name__)

SWEEP_BATCH = 500  # documents deleted per command


@dataclass(frozen=True, slots=True)
class Expiry:
    """Documents of ``collection`` whose ``since`` (a time) is more than ``window`` ago,
    among those matching ``where`` (equalities: an index's leading fields), serve no one."""

    collection: str
    since: str  # the time field the window starts at
    window: timedelta
    where: Doc = field(default_factory=dict)
    # no index on ``since``: read in insertion order instead (see the module)
    oldest_first: bool = False
    # with ``oldest_first``: the time field of a document without ``since`` (one stored
    # before the field existed); without either, a document counts as expired
    fallback: str | None = None

    def __post_init__(self) -> None:
        if self.fallback is not None and not self.oldest_first:
            raise ValueError("a fallback time field needs oldest_first (a filter has one field)")

    def expired(self, now: datetime) -> Doc:
        """The filter of what has outlived the window at ``now``."""
        return {**self.where, self.since: {"$lt": now - self.window}}


class Sweeper:
    """Deletes expired documents every ``interval`` s; counts the collections every
    ``count_interval`` s (gauge ``tongxin_db_documents``)."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        rules: Sequence[Expiry],
        *,
        documents: Gauge,
        deleted: Counter,
        interval: float = 3600.0,
        count_interval: float = 60.0,
        batch: int = SWEEP_BATCH,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.rules = list(rules)
        self.documents = documents
        self.deleted = deleted
        self.interval = interval
        self.count_interval = count_interval
        self.batch = batch
        self.clock = clock

    async def sweep_one(self, rule: Expiry, now: datetime) -> int:
        """Delete what ``rule`` finds expired at ``now``; how many."""
        col = self.db[rule.collection]
        cutoff = now - rule.window
        total = 0
        while True:
            if rule.oldest_first:
                fields = [rule.since] + ([rule.fallback] if rule.fallback else [])
                docs = [d async for d in col.find({}, dict.fromkeys(fields, 1)).limit(self.batch)]
                ids = []
                for d in docs:
                    at = next((d[f] for f in fields if d.get(f) is not None), None)
                    if isinstance(at, datetime) and _aware(at) >= cutoff:
                        break
                    ids.append(d["_id"])
                more = len(ids) == len(docs) == self.batch
            else:
                found = col.find(rule.expired(now), {"_id": 1}).limit(self.batch)
                ids = [d["_id"] async for d in found]
                more = len(ids) == self.batch
            if ids:
                # the filter again: a document changed since it was read (a fired deadline
                # scheduled anew) is kept
                flt = {"_id": {"$in": ids}}
                if not rule.oldest_first:
                    flt |= rule.expired(now)
                res = await col.delete_many(flt)
                total += res.deleted_count
            if not more:
                break
        if total:
            self.deleted.labels(collection=rule.collection).inc(total)
        return total

    async def sweep(self) -> dict[str, int]:
        """One pass over every rule; deleted documents per collection."""
        now = self.clock()
        out: dict[str, int] = {}
        for rule in self.rules:
            out[rule.collection] = out.get(rule.collection, 0) + await self.sweep_one(rule, now)
        return out

    async def count(self) -> dict[str, int]:
        """Set the gauge to each collection's size (metadata: one cheap command each)."""
        counts: dict[str, int] = {}
        for name in sorted(await self.db.list_collection_names()):
            counts[name] = await self.db[name].estimated_document_count()
            self.documents.labels(collection=name).set(counts[name])
        return counts

    async def run(self, stopping: asyncio.Event) -> None:
        """Sweep and count until ``stopping`` is set; a failed pass is tried again later."""
        loop = asyncio.get_running_loop()
        sweep_at = loop.time()
        while not stopping.is_set():
            if loop.time() >= sweep_at:
                sweep_at = loop.time() + self.interval
                try:
                    deleted = await self.sweep()
                    if any(deleted.values()):
                        log.info("retention sweep", extra={"deleted": deleted})
                except Exception as exc:
                    log.warning("retention sweep failed", extra={"error": repr(exc)})
            try:
                await self.count()
            except Exception as exc:
                log.warning("document count failed", extra={"error": repr(exc)})
            wait = max(0.0, min(self.count_interval, sweep_at - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
