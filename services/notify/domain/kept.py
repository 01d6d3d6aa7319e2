"""What notify keeps from events for later messages: the submitter's contact (only notify
keeps it, from ``request.submitted``) and the cases it heard of (``case.routed``, plus the
units an escalation brought in) — and for how long (:class:`Retention`): both serve the
request's messages, so both go a window after the request closed (``case.closed``,
``request.withdrawn``), and at the latest a cap after they were stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tongxin.contracts.events import (
    CaseClosed,
    CaseEscalated,
    CaseRouted,
    Event,
    RequestSubmitted,
    RequestWithdrawn,
)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a request's contact and case are kept: ``after_close`` after notify heard
    the request closed, and never more than ``cap`` after they were stored (a request that
    never closes). PIPL: personal information no longer than its purpose needs."""

    after_close: timedelta
    cap: timedelta

    def expired(
        self, stored_at: datetime | None, closed_at: datetime | None, now: datetime
    ) -> bool:
        """Whether what was stored at ``stored_at`` (and closed at ``closed_at``) has
        outlived its window at ``now`` (an unknown time starts no window)."""
        if closed_at is not None and _aware(closed_at) < now - self.after_close:
            return True
        return stored_at is not None and _aware(stored_at) < now - self.cap

    def fresh_until(
        self, stored_at: datetime | None, closed_at: datetime | None, read_at: datetime
    ) -> datetime:
        """Until when a copy read at ``read_at`` may be used without reading it again. A
        close recorded after the read (by another replica) is at ``read_at`` or later, so
        the copy cannot expire before ``read_at + after_close``; a known close or the cap
        may end it sooner."""
        until = (_aware(closed_at) if closed_at is not None else read_at) + self.after_close
        if stored_at is not None:
            until = min(until, _aware(stored_at) + self.cap)
        return until


@dataclass(frozen=True, slots=True)
class Contact:
    """A request's submitter as ``request.submitted`` named them."""

    request_id: str
    name: str | None = None
    phone: str | None = None
    urgency: str | None = None
    community: str | None = None
    # when notify stored it, and when it heard the request closed (retention: not facts)
    stored_at: datetime | None = None
    closed_at: datetime | None = None

    def facts(self) -> dict[str, Any]:
        """What the planner and templates read (``name``, ``phone``, ``urgency``, …)."""
        return {
            "name": self.name,
            "phone": self.phone,
            "urgency": self.urgency,
            "community": self.community,
        }

    def fields(self) -> dict[str, Any]:
        """The stored fields the event told (the document's ``_id`` is the request id;
        ``stored_at`` and ``closed_at`` are written by the store once each)."""
        return self.facts()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Contact:
        """A stored contact back (one stored before ``stored_at`` existed: its
        ``updated_at``, which a contact's only write set)."""
        return cls(
            request_id=str(doc["_id"]),
            name=doc.get("name"),
            phone=doc.get("phone"),
            urgency=doc.get("urgency"),
            community=doc.get("community"),
            stored_at=doc.get("stored_at") or doc.get("updated_at"),
            closed_at=doc.get("closed_at"),
        )


@dataclass(frozen=True, slots=True)
class KnownCase:
    """A routed case: its request, handling units, community and tier."""

    case_id: str
    request_id: str
    units: tuple[str, ...] = ()
    community: str | None = None
    tier: str | None = None

    def facts(self) -> dict[str, Any]:
        """What the rules and templates read as ``case``."""
        return {
            "case_id": self.case_id,
            "request_id": self.request_id,
            "units": list(self.units),
            "community": self.community,
            "tier": self.tier,
        }

    def fields(self) -> dict[str, Any]:
        """The stored fields (the document's ``_id`` is the case id)."""
        return {
            "request_id": self.request_id,
            "units": list(self.units),
            "community": self.community,
            "tier": self.tier,
        }

    def with_unit(self, unit: str) -> KnownCase:
        """The case with one more unit (an escalation)."""
        return self if unit in self.units else replace(self, units=(*self.units, unit))

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> KnownCase:
        """A stored case back."""
        return cls(
            case_id=str(doc["_id"]),
            request_id=str(doc.get("request_id") or ""),
            units=tuple(str(u) for u in doc.get("units") or ()),
            community=doc.get("community"),
            tier=doc.get("tier"),
        )


def contact_from(event: Event) -> Contact | None:
    """The contact an event tells (only ``request.submitted`` does)."""
    if not isinstance(event, RequestSubmitted):
        return None
    return Contact(
        request_id=event.request_id,
        name=event.submitter.name,
        phone=event.submitter.phone,
        urgency=event.urgency.value,
        community=event.community,
    )


def case_after(event: Event, known: KnownCase | None) -> KnownCase | None:
    """The case as notify knows it after ``event`` (``known``: before it). A routing
    replaces what was known; an escalation adds its unit to a known case."""
    if isinstance(event, CaseRouted):
        return KnownCase(
            case_id=event.case_id,
            request_id=event.request_id,
            units=tuple(event.units),
            community=event.community,
            tier=event.tier.value,
        )
    if isinstance(event, CaseEscalated) and known is not None:
        return known.with_unit(event.to_unit)
    return known


def closes(event: Event) -> bool:
    """Whether the event ends its request: the case closed (satisfied, no feedback in
    time, withdrawn), or the resident withdrew it (before any case, too)."""
    return isinstance(event, CaseClosed | RequestWithdrawn)


def case_id_of(event: Event) -> str | None:
    """The case an event is about, if it names one."""
    value = getattr(event, "case_id", None)
    return str(value) if value else None


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
