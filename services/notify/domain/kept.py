"""What notify keeps from events for later messages: the submitter's contact (only notify
keeps it, from ``request.submitted``) and the cases it heard of (``case.routed``, plus the
units an escalation brought in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tongxin.contracts.events import CaseEscalated, CaseRouted, Event, RequestSubmitted


@dataclass(frozen=True, slots=True)
class Contact:
    """A request's submitter as ``request.submitted`` named them."""

    request_id: str
    name: str | None = None
    phone: str | None = None
    urgency: str | None = None
    community: str | None = None

    def facts(self) -> dict[str, Any]:
        """What the planner and templates read (``name``, ``phone``, ``urgency``, …)."""
        return {
            "name": self.name,
            "phone": self.phone,
            "urgency": self.urgency,
            "community": self.community,
        }

    def fields(self) -> dict[str, Any]:
        """The stored fields (the document's ``_id`` is the request id)."""
        return self.facts()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Contact:
        """A stored contact back."""
        return cls(
            request_id=str(doc["_id"]),
            name=doc.get("name"),
            phone=doc.get("phone"),
            urgency=doc.get("urgency"),
            community=doc.get("community"),
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


def case_id_of(event: Event) -> str | None:
    """The case an event is about, if it names one."""
    value = getattr(event, "case_id", None)
    return str(value) if value else None
