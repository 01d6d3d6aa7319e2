"""How a stored request is shown: whole to staff, masked to the resident, summarised in lists."""

from __future__ import annotations

from typing import Any

from services.intake.domain.requests import mask_name, mask_phone
from services.intake.domain.timeline import (
    STATUS_NAMES_ZH,
    Status,
    resident_timeline,
    staff_timeline,
)

INTERNAL = ("_id", "tracking_hash", "rev", "event_id")

RESIDENT_FIELDS = (
    "status",
    "category",
    "title",
    "description",
    "community",
    "compound",
    "channel",
    "urgency",
    "vulnerable",
    "attributes",
    "attachments",
    "submitted_at",
    "tier",
    "case_id",
    "units",
    "resolve_by",
    "resolved_at",
    "awaiting_feedback",
    "feedback_due",
    "feedback",
    "duplicate_of",
    "withdrawn_at",
    "closed_at",
)

SUMMARY_FIELDS = (
    "status",
    "category",
    "title",
    "community",
    "compound",
    "channel",
    "urgency",
    "vulnerable",
    "submitted_at",
    "tier",
    "case_id",
    "duplicate_of",
)


def _status_name(doc: dict[str, Any]) -> str | None:
    try:
        return STATUS_NAMES_ZH[Status(str(doc.get("status")))]
    except ValueError:
        return None


def staff_view(doc: dict[str, Any]) -> dict[str, Any]:
    """Everything but secrets and bookkeeping."""
    out = {k: v for k, v in doc.items() if k not in INTERNAL}
    out = {"id": doc["_id"], "status_name": _status_name(doc), **out}
    out["timeline"] = staff_timeline(list(doc.get("timeline") or []))
    return out


def resident_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What the submitter sees with the tracking code: contact masked, no street address."""
    out: dict[str, Any] = {"id": doc["_id"], "status_name": _status_name(doc)}
    out.update({k: doc[k] for k in RESIDENT_FIELDS if k in doc})
    sub = dict(doc.get("submitter") or {})
    out["submitter"] = {
        "name": mask_name(sub.get("name", "")),
        "phone": mask_phone(sub.get("phone")),
        "party_member": bool(sub.get("party_member", False)),
    }
    out["timeline"] = resident_timeline(list(doc.get("timeline") or []))
    return out


def summary_view(doc: dict[str, Any]) -> dict[str, Any]:
    """One row of ``GET /v1/requests``: no contact details, no timeline."""
    out: dict[str, Any] = {"id": doc["_id"], "status_name": _status_name(doc)}
    out.update({k: doc[k] for k in SUMMARY_FIELDS if k in doc})
    return out
