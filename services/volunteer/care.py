"""Special-care visits before anyone asks (未诉先办): registration, visits generated on
cadence by durable deadlines, visit records, and ``care.visit_overdue`` when one is missed.

Two deadline kinds per recipient, both in the database and fired exactly once:
``care_generate`` (visit ``seq`` falls due: create it, schedule its overdue check and the
next visit) and ``care_overdue`` (the visit's window passed without a record: alert).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.care import (
    CARE_SKILL,
    VisitStatus,
    visit_deadline,
    visit_id,
    visitor_for,
)
from services.volunteer.metrics import VolunteerMetrics
from services.volunteer.store import VolunteerStore, now_utc
from tongxin.contracts.enums import CareType
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import CareVisitOverdue
from tongxin.contracts.topics import VOLUNTEER_TASKS
from tongxin.runtime.auth import Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc, in_transaction
from tongxin.runtime.scheduler import Complete, DeadlineStore
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

CARE_GENERATE = "care_generate"
CARE_OVERDUE = "care_overdue"
STAFF = frozenset({Role.STAFF, Role.ADMIN})


def generate_subject(rid: str) -> str:
    """Deadline subject of a recipient's visit generation."""
    return f"care-gen:{rid}"


def overdue_subject(rid: str) -> str:
    """Deadline subject of a recipient's overdue checks."""
    return f"care-visit:{rid}"


class CareVisits:
    """The special-care registry's schedule."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: VolunteerStore,
        settings: VolunteerSettings,
        metrics: VolunteerMetrics,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.rt = rt
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.deadlines = DeadlineStore(rt.db)
        self.clock = clock

    async def schedule_generate(
        self, session: AsyncClientSession | None, rid: str, seq: int, due: datetime
    ) -> None:
        """Visit ``seq`` of ``rid`` falls due at ``due``."""
        await self.deadlines.schedule(
            session,
            f"care-gen:{rid}:{seq}",
            CARE_GENERATE,
            due,
            generate_subject(rid),
            {"recipient_id": rid, "seq": seq, "due_at": due},
        )

    async def register(self, doc: Doc) -> Doc:
        """Store a recipient and schedule their first visit now (one transaction)."""
        now = self.clock()
        doc = {**doc, "created_at": now, "updated_at": now, "active": True, "next_seq": 1}

        async def txn(session: AsyncClientSession) -> None:
            await self.store.recipients.insert_one(doc, session=session)
            await self.schedule_generate(session, doc["_id"], 1, now)

        try:
            await in_transaction(self.rt.mongo, txn)
        except DuplicateKeyError as exc:
            raise ApiError(409, "already_exists", f"Recipient {doc['_id']} exists.") from exc
        return doc

    async def update(self, rec: Doc, changes: Doc) -> Doc:
        """Apply staff changes; cadence and activity changes move the schedule."""
        rid = rec["_id"]
        now = self.clock()
        cadence_changed = "cadence_days" in changes and changes["cadence_days"] != rec.get(
            "cadence_days"
        )
        active = changes.get("active", rec.get("active", True))

        async def txn(session: AsyncClientSession) -> None:
            await self.store.recipients.update_one(
                {"_id": rid}, {"$set": {**changes, "updated_at": now}}, session=session
            )
            if not active:
                await self.deadlines.cancel_subject(session, generate_subject(rid))
                await self.deadlines.cancel_subject(session, overdue_subject(rid))
                await self.store.visits.update_many(
                    {"recipient_id": rid, "status": VisitStatus.OPEN.value},
                    {"$set": {"status": VisitStatus.CANCELLED.value, "updated_at": now}},
                    session=session,
                )
            elif cadence_changed or not rec.get("active", True):
                # the next visit: one new cadence after the last one fell due (or now)
                await self.deadlines.cancel_subject(session, generate_subject(rid))
                last = rec.get("last_due_at")
                days = int(changes.get("cadence_days") or rec["cadence_days"])
                due = now if last is None else max(now, last + self.settings.care_cadence(days))
                await self.schedule_generate(session, rid, int(rec.get("next_seq", 1)), due)

        await in_transaction(self.rt.mongo, txn)
        out = await self.store.get_recipient(rid)
        assert out is not None
        return out

    async def on_generate(self, deadline: Doc, complete: Complete) -> None:
        """Deadline handler: visit ``seq`` falls due — create it and plan the next one."""
        p = deadline.get("payload", {})
        rid, seq, due = p["recipient_id"], int(p["seq"]), p["due_at"]
        rec = await self.store.get_recipient(rid)
        if rec is None or not rec.get("active", True):
            await in_transaction(self.rt.mongo, complete)
            return
        cadence = self.settings.care_cadence(int(rec["cadence_days"]))
        vid = visit_id(rid, seq)
        deadline_at = visit_deadline(due, self.settings.care_visit_window, cadence)
        assigned = list(rec.get("assigned_volunteers", []))
        visitor = visitor_for(assigned, seq)
        now = self.clock()
        visit = {
            "_id": vid,
            "recipient_id": rid,
            "seq": seq,
            "care_type": rec["care_type"],
            "community": rec["community"],
            "compound": rec.get("compound"),
            "volunteer_id": visitor,
            "assigned_volunteers": assigned,
            "due_at": due,
            "deadline": deadline_at,
            "status": VisitStatus.OPEN.value,
            "created_at": now,
        }

        async def txn(session: AsyncClientSession) -> None:
            await complete(session)
            await self.store.visits.update_one(
                {"_id": vid}, {"$setOnInsert": visit}, upsert=True, session=session
            )
            await self.deadlines.schedule(
                session,
                f"care-overdue:{vid}",
                CARE_OVERDUE,
                deadline_at,
                overdue_subject(rid),
                {"visit_id": vid, "recipient_id": rid},
            )
            await self.schedule_generate(session, rid, seq + 1, due + cadence)
            await self.store.recipients.update_one(
                {"_id": rid},
                {"$set": {"next_seq": seq + 1, "last_due_at": due, "next_due_at": due + cadence}},
                session=session,
            )

        await in_transaction(self.rt.mongo, txn)
        self.metrics.visits.labels("generated").inc()
        log.info("care visit generated", extra={"visit": vid, "volunteer": visitor})

    async def on_overdue(self, deadline: Doc, complete: Complete) -> None:
        """Deadline handler: a visit's window passed without a record → alert."""
        vid = deadline.get("payload", {}).get("visit_id", "")
        visit = await self.store.get_visit(vid)
        if visit is None or visit["status"] != VisitStatus.OPEN.value:
            await in_transaction(self.rt.mongo, complete)
            return
        rec = await self.store.get_recipient(visit["recipient_id"])
        ev = CareVisitOverdue(
            request_id=f"care:{visit['recipient_id']}",
            recipient_id=visit["recipient_id"],
            visit_id=vid,
            care_type=CareType(visit["care_type"]),
            community=visit["community"],
            compound=visit.get("compound"),
            due_at=visit["deadline"],
            volunteer_ids=list((rec or {}).get("assigned_volunteers", [])),
        )
        out = Envelope.wrap(ev, self.rt.source)
        now = self.clock()

        async def txn(session: AsyncClientSession) -> None:
            await complete(session)
            res = await self.store.visits.update_one(
                {"_id": vid, "status": VisitStatus.OPEN.value},
                {
                    "$set": {
                        "status": VisitStatus.OVERDUE.value,
                        "overdue_at": now,
                        "alert_event_id": out.id,
                    }
                },
                session=session,
            )
            if res.modified_count == 1:
                await self.rt.outbox.add(session, VOLUNTEER_TASKS.name, out)

        await in_transaction(self.rt.mongo, txn)
        self.metrics.visits.labels("overdue").inc()
        self.rt.relay.nudge()
        log.warning("care visit overdue", extra={"visit": vid})

    async def record(
        self, vid: str, who: Principal, hours: float, note: str | None, visited_at: datetime | None
    ) -> Doc:
        """A visit was made: the assigned volunteer (or staff) records it with hours."""
        visit = await self.store.get_visit(vid)
        if visit is None:
            raise ApiError(404, "not_found", f"No visit {vid}.")
        if who.role not in STAFF and (
            who.role != Role.VOLUNTEER or who.sub not in visit.get("assigned_volunteers", [])
        ):
            raise ApiError(403, "not_your_visit", "Only an assigned volunteer or staff records it.")
        status = visit["status"]
        if status not in (VisitStatus.OPEN.value, VisitStatus.OVERDUE.value):
            raise ApiError(409, "visit_closed", f"The visit is {status}.")
        now = self.clock()
        when = visited_at or now
        if when > now:
            raise ApiError(
                422,
                "validation_error",
                "A visit cannot be recorded in the future.",
                [{"loc": ["body", "visited_at"], "msg": "in the future"}],
            )
        volunteer = who.sub if who.role == Role.VOLUNTEER else visit.get("volunteer_id")
        late = status == VisitStatus.OVERDUE.value

        async def txn(session: AsyncClientSession) -> None:
            res = await self.store.visits.update_one(
                {"_id": vid, "status": status},
                {
                    "$set": {
                        "status": VisitStatus.COMPLETED.value,
                        "late": late,
                        "visited_at": when,
                        "recorded_at": now,
                        "recorded_by": who.sub,
                        "visited_by": volunteer,
                        "hours": hours,
                        "note": note,
                    }
                },
                session=session,
            )
            if res.modified_count != 1:
                raise ApiError(409, "conflict", "The visit changed meanwhile; try again.")
            await self.deadlines.cancel(session, f"care-overdue:{vid}")
            await self.store.recipients.update_one(
                {"_id": visit["recipient_id"]}, {"$set": {"last_visit_at": when}}, session=session
            )
            if volunteer:
                await self.store.add_hours(
                    session,
                    {
                        "_id": vid,
                        "kind": "care_visit",
                        "volunteer_id": volunteer,
                        "hours": hours,
                        "skill": CARE_SKILL[CareType(visit["care_type"])].value,
                        "community": visit["community"],
                        "at": now,
                        "note": note,
                    },
                )

        await in_transaction(self.rt.mongo, txn)
        self.metrics.visits.labels("completed_late" if late else "completed").inc()
        if volunteer:
            self.metrics.hours.labels("care_visit").inc(hours)
        out = await self.store.get_visit(vid)
        assert out is not None
        return out

    async def seed(self, recipients: list[dict[str, Any]]) -> int:
        """Register seed recipients not there yet (never overwrites edits)."""
        added = 0
        for raw in recipients:
            doc = {k: v for k, v in raw.items() if k not in ("id", "_comment")}
            doc["_id"] = raw["id"]
            doc.setdefault("assigned_volunteers", [])
            doc.setdefault("cadence_days", 7)
            if not doc.get("consent"):
                log.warning("seed recipient without consent skipped", extra={"id": raw["id"]})
                continue
            try:
                await self.register(doc)
                added += 1
            except ApiError:
                pass
        return added
