"""Special-care visits (未诉先办): cadence, visitor rotation, overdue rule (no I/O).

Visit ``k`` of a recipient becomes due at ``first_due + (k-1) * cadence``; it must be
recorded within the visit window, or it is overdue and staff are alerted. The cadence
continues whether or not a visit was made, so a missed visit never stops the schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.volunteer.domain.refusals import Conflict, Forbidden, Invalid
from tongxin.contracts.enums import CareType, Skill
from tongxin.contracts.events import CareVisitOverdue


class VisitStatus(StrEnum):
    """Where a care visit is."""

    OPEN = "open"
    COMPLETED = "completed"
    OVERDUE = "overdue"
    CANCELLED = "cancelled"


# The skill a visit counts toward (for squad hours).
CARE_SKILL: dict[CareType, Skill] = {
    CareType.ELDERLY_ALONE: Skill.ELDER_CARE,
    CareType.DISABLED: Skill.ELDER_CARE,
    CareType.HARDSHIP: Skill.CHARITY,
    CareType.LEFT_BEHIND_CHILD: Skill.TUTORING,
}


def visit_due(first_due: datetime, cadence: timedelta, seq: int) -> datetime:
    """When visit ``seq`` (1-based) becomes due."""
    if seq < 1:
        raise ValueError("visits are numbered from 1")
    return first_due + cadence * (seq - 1)


def visit_deadline(due_at: datetime, window: timedelta, cadence: timedelta) -> datetime:
    """When an unrecorded visit becomes overdue: the window, never past the next visit."""
    return due_at + min(window, cadence)


def visitor_for(assigned: Sequence[str], seq: int) -> str | None:
    """The assigned volunteers take turns, visit by visit; None when nobody is assigned."""
    if not assigned:
        return None
    return assigned[(seq - 1) % len(assigned)]


def visit_id(recipient_id: str, seq: int) -> str:
    """Stable id of a recipient's visit ``seq``."""
    return f"V-{recipient_id.replace(':', '-')}-{seq:04d}"


# --- recipients and visits, as stored --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rescheduled:
    """What a change of a recipient does to their visits: ``stopped`` — no more visits
    (pending deadlines and open visits cancelled); ``next_due`` — the next visit falls due
    then instead (its generation moves)."""

    stopped: bool = False
    next_due: datetime | None = None


@dataclass
class Recipient:
    """A special-care recipient 特殊关爱对象, registered with consent, and their schedule."""

    id: str
    name: str
    care_type: str
    community: str
    compound: str | None = None
    address: str | None = None
    phone: str | None = None
    cadence_days: int = 7
    assigned_volunteers: list[str] = field(default_factory=list)
    consent: bool = True
    consent_note: str | None = None
    notes: str | None = None
    registered_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    active: bool = True
    next_seq: int = 1
    last_due_at: datetime | None = None
    next_due_at: datetime | None = None
    last_visit_at: datetime | None = None
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        """The database document (``_id`` is the recipient id)."""
        doc = asdict(self)
        extra = doc.pop("extra")
        doc["_id"] = doc.pop("id")
        return {**extra, **doc}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Recipient:
        """Read a stored recipient (or a registration, with ``_id``)."""
        mine = {k: v for k, v in doc.items() if k in _RECIPIENT_FIELDS}
        extra = {k: v for k, v in doc.items() if k not in _RECIPIENT_FIELDS and k != "_id"}
        mine["version"] = int(doc.get("version") or 0)
        return cls(id=doc["_id"], **mine, extra=extra)

    def change(
        self, changes: Mapping[str, Any], now: datetime, cadence: Callable[[int], timedelta]
    ) -> Rescheduled:
        """Apply a staff change; a new cadence (or becoming active again) moves the next
        visit to one new cadence after the last one fell due (or now); inactive stops them."""
        was_active = self.active
        new_cadence = "cadence_days" in changes and changes["cadence_days"] != self.cadence_days
        for key, value in changes.items():
            if key in _RECIPIENT_FIELDS and key not in ("version", "extra"):
                setattr(self, key, value)
            else:
                self.extra[key] = value
        self.updated_at = now
        if not self.active:
            return Rescheduled(stopped=True)
        if new_cadence or not was_active:
            last = self.last_due_at
            due = now if last is None else max(now, last + cadence(self.cadence_days))
            return Rescheduled(next_due=due)
        return Rescheduled()

    def visit_falls_due(
        self, seq: int, due: datetime, cadence: timedelta, window: timedelta, now: datetime
    ) -> Visit:
        """Visit ``seq`` falls due at ``due``: the visit (the assigned volunteers take
        turns), and the schedule moves on to the next one."""
        visit = Visit(
            id=visit_id(self.id, seq),
            recipient_id=self.id,
            seq=seq,
            care_type=self.care_type,
            community=self.community,
            compound=self.compound,
            volunteer_id=visitor_for(self.assigned_volunteers, seq),
            assigned_volunteers=list(self.assigned_volunteers),
            due_at=due,
            deadline=visit_deadline(due, window, cadence),
            status=VisitStatus.OPEN,
            created_at=now,
        )
        self.next_seq = seq + 1
        self.last_due_at = due
        self.next_due_at = due + cadence
        return visit


_RECIPIENT_FIELDS = set(Recipient.__dataclass_fields__) - {"id"}


@dataclass
class Visit:
    """One care visit of a recipient: due, assigned, then made, missed or cancelled."""

    id: str
    recipient_id: str
    seq: int
    care_type: str
    community: str
    compound: str | None
    volunteer_id: str | None
    assigned_volunteers: list[str]
    due_at: datetime
    deadline: datetime
    status: VisitStatus
    created_at: datetime
    updated_at: datetime | None = None
    overdue_at: datetime | None = None
    alert_event_id: str | None = None
    late: bool | None = None
    visited_at: datetime | None = None
    recorded_at: datetime | None = None
    recorded_by: str | None = None
    visited_by: str | None = None
    hours: float | None = None
    note: str | None = None
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        """The database document (``_id`` is the visit id)."""
        doc = asdict(self)
        doc["_id"] = doc.pop("id")
        doc["status"] = self.status.value
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Visit:
        """Read a stored visit."""
        d = {k: v for k, v in doc.items() if k in _VISIT_FIELDS}
        d["status"] = VisitStatus(doc["status"])
        d["version"] = int(doc.get("version") or 0)
        return cls(id=doc["_id"], **d)

    def overdue(self, now: datetime, volunteer_ids: list[str]) -> CareVisitOverdue:
        """The window passed without a record: the visit is overdue; the alert for staff."""
        self.status = VisitStatus.OVERDUE
        self.overdue_at = now
        return CareVisitOverdue(
            request_id=f"care:{self.recipient_id}",
            recipient_id=self.recipient_id,
            visit_id=self.id,
            care_type=CareType(self.care_type),
            community=self.community,
            compound=self.compound,
            due_at=self.deadline,
            volunteer_ids=volunteer_ids,
        )

    def record(
        self,
        *,
        by: str,
        by_staff: bool,
        by_volunteer: bool,
        hours: float,
        note: str | None,
        visited_at: datetime | None,
        now: datetime,
    ) -> str | None:
        """The visit was made: an assigned volunteer (or staff) records it with hours; a
        missed visit is recorded late. Returns the volunteer whose hours these are."""
        if not by_staff and not (by_volunteer and by in self.assigned_volunteers):
            raise Forbidden("not_your_visit", "Only an assigned volunteer or staff records it.")
        if self.status not in (VisitStatus.OPEN, VisitStatus.OVERDUE):
            raise Conflict("visit_closed", f"The visit is {self.status}.")
        when = visited_at or now
        if when > now:
            raise Invalid("visited_at", "A visit cannot be recorded in the future.")
        volunteer = by if by_volunteer else self.volunteer_id
        self.late = self.status == VisitStatus.OVERDUE
        self.status = VisitStatus.COMPLETED
        self.visited_at, self.recorded_at = when, now
        self.recorded_by, self.visited_by = by, volunteer
        self.hours, self.note = hours, note
        return volunteer

    def cancel(self, now: datetime) -> None:
        """The recipient's visits stopped."""
        self.status = VisitStatus.CANCELLED
        self.updated_at = now


_VISIT_FIELDS = set(Visit.__dataclass_fields__) - {"id"}
