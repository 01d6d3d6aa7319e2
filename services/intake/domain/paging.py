"""Listing requests: filters and opaque cursors (newest first, stable under inserts)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tongxin.contracts.enums import Category, Channel, Tier, Urgency


class BadCursor(ValueError):
    """A cursor that this service did not issue (or that was tampered with)."""


def encode_cursor(submitted_at: datetime, request_id: str) -> str:
    """The position after the last item of a page."""
    raw = json.dumps([submitted_at.astimezone(UTC).isoformat(), request_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of :func:`encode_cursor`; raises :class:`BadCursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, rid = json.loads(raw)
        when = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("invalid cursor") from exc
    if not isinstance(rid, str) or when.tzinfo is None:
        raise BadCursor("invalid cursor")
    return when, rid


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Filters of ``GET /v1/requests`` (all optional, combined with AND)."""

    status: str | None = None
    tier: Tier | None = None
    category: Category | None = None
    community: str | None = None
    compound: str | None = None
    channel: Channel | None = None
    urgency: Urgency | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    duplicate_of: str | None = None

    def query(self, cursor: tuple[datetime, str] | None = None) -> dict[str, Any]:
        """The database filter, continuing after ``cursor`` when given."""
        q: dict[str, Any] = {}
        for name in ("status", "community", "compound", "duplicate_of"):
            value = getattr(self, name)
            if value is not None:
                q[name] = value
        for name in ("tier", "category", "channel", "urgency"):
            value = getattr(self, name)
            if value is not None:
                q[name] = value.value
        window: dict[str, datetime] = {}
        if self.submitted_from is not None:
            window["$gte"] = self.submitted_from
        if self.submitted_to is not None:
            window["$lt"] = self.submitted_to
        if window:
            q["submitted_at"] = window
        if cursor is not None:
            at, rid = cursor
            after = {
                "$or": [{"submitted_at": {"$lt": at}}, {"submitted_at": at, "_id": {"$lt": rid}}]
            }
            q = {"$and": [q, after]} if q else after
        return q
