"""Retention (PIPL: the shortest necessary period): contact details of a request are
removed a configurable number of days after it was closed or withdrawn.

Removed: the submitter's name and phone, the street address and the exact location, the
request's outbox records (the sent ``request.submitted`` carried the contact); phone
numbers written into the free text are masked. Kept, for statistics: category, community,
compound, tier, channel, urgency, the vulnerable flag, every timestamp, the timeline and
the ratings. The sweep is a conditional update per request, so it is idempotent, safe with
several replicas, and loses nothing across restarts (all state is in the database).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from services.intake.domain.timeline import Status
from services.intake.store import REQUESTS
from tongxin.runtime.logs import redact
from tongxin.runtime.mongo import Doc
from tongxin.runtime.outbox import OUTBOX
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

CONTACT_FIELDS = ("submitter.name", "submitter.phone", "address", "location")


def _due(cutoff: datetime) -> Doc:
    return {
        "contact_purged_at": {"$exists": False},
        "$or": [
            {"status": Status.CLOSED.value, "closed_at": {"$lte": cutoff}},
            {"status": Status.WITHDRAWN.value, "withdrawn_at": {"$lte": cutoff}},
        ],
    }


async def purge_contacts(
    db: AsyncDatabase[Doc], retention: timedelta, now: datetime, limit: int = 500
) -> int:
    """Remove contact details of requests closed/withdrawn before ``now - retention``."""
    requests, outbox = db[REQUESTS], db[OUTBOX]
    purged = 0
    cursor = requests.find(_due(now - retention), {"title": 1, "description": 1}).limit(limit)
    async for doc in cursor:
        rid = doc["_id"]
        if await outbox.count_documents({"key": rid.encode(), "sent": False}, limit=1):
            # an event of it not yet published (or its mark not yet written): the next
            # sweep comes back, so none of its records outlives the purge
            continue
        # the outbox first: if the update below fails, the next sweep comes back to it
        await outbox.delete_many({"key": rid.encode(), "sent": True})
        res = await requests.update_one(
            {"_id": rid, "contact_purged_at": {"$exists": False}},
            {
                "$unset": dict.fromkeys(CONTACT_FIELDS, ""),
                "$set": {
                    "title": redact(str(doc.get("title", ""))),
                    "description": redact(str(doc.get("description", ""))),
                    "contact_purged_at": now,
                },
            },
        )
        purged += res.modified_count
    return purged


def start_retention(
    rt: ServiceRuntime,
    retention: timedelta,
    interval_s: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Sweep now and every ``interval_s`` until the service stops."""
    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            try:
                while (n := await purge_contacts(rt.db, retention, clock())) > 0:
                    log.info("contact details removed", extra={"requests": n})
            except Exception as exc:
                log.warning("retention sweep failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass

    rt.run_in_background("contact-retention", run, stop.set)
