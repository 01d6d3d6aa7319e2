"""A delivery: one message to one recipient over one channel for one event — at most once.

Statuses: ``pending`` (planned or released, not attempted yet), ``deferred`` (waiting for
the end of its recipient's quiet hours), ``sending`` (taken for an attempt: the only state
a crash can leave uncertain — never sent again), ``retrying`` (between attempts, held by
its process until its lease runs out), ``sent``, ``failed`` (after the last attempt; a DLQ
replay of its event opens it again).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from services.notify.domain.directory import STAFF_KINDS
from services.notify.domain.plan import Planned
from services.notify.domain.templates import Message
from tongxin.contracts.enums import NotifyChannel


class Status(StrEnum):
    """Where a delivery is."""

    PENDING = "pending"
    DEFERRED = "deferred"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"


# known undelivered: a sweep may resume them once their lease ran out
OPEN_STATUSES = (Status.PENDING, Status.RETRYING)


class Take(StrEnum):
    """How a delivery is taken for an attempt (the condition of the claim)."""

    PENDING = "pending"  # planned or released, never attempted: whoever takes it first
    OWN_RETRY = "own_retry"  # between attempts, held by this process
    ABANDONED = "abandoned"  # pending or retrying, its lease ran out: its holder is gone


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    """Which deliveries the API lists (every field narrows; None: any)."""

    request_id: str | None = None
    recipients: Sequence[str] | None = None
    status: str | None = None
    channel: str | None = None


def delivery_id(event_id: str, recipient: str, channel: str) -> str:
    """Stable id of one delivery (at most one per event, recipient and channel)."""
    return f"{event_id}|{recipient}|{channel}"


def channel_of(did: str) -> NotifyChannel:
    """The channel of a delivery, from its id (``<event>|<recipient>|<channel>``)."""
    return NotifyChannel(did.rsplit("|", 1)[-1])


def notification_id(did: str) -> str:
    """The stable id of a delivery as the outside world sees it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tongxin:notify:{did}"))


def outcome_event_id(did: str, what: str) -> str:
    """A stable id for the event about a delivery's outcome (``sent``, ``failed:<n>``: a
    failure after a replay gets a new one)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tongxin:notify:{did}:{what}"))


def _aware(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery as stored (``deliveries`` collection)."""

    id: str
    event_id: str
    event_type: str
    request_id: str
    recipient: str
    channel: NotifyChannel
    message: Message
    status: Status
    created_at: datetime
    updated_at: datetime
    notification_id: str = ""
    case_id: str | None = None
    recipient_name: str = ""
    recipient_kind: str = ""
    staff: bool = False
    template: str = ""
    critical: bool = False
    fallback: bool = False
    markdown: bool = False
    address: Mapping[str, str] = field(default_factory=dict)
    not_before: datetime | None = None
    # until when its holder (the planning handler, or the process between attempts or in
    # one) has it; afterwards a sweep may resume an open one
    lease_until: datetime | None = None
    attempts: int = 0
    owner: str | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None
    provider_id: str | None = None

    # — transitions (pure: the store writes what they decide) —

    def sent_on_console(self, owner: str, now: datetime) -> Delivery:
        """A console delivery is written to the log once its plan committed: it is
        recorded sent with the plan."""
        return replace(
            self,
            status=Status.SENT,
            attempts=self.attempts + 1,
            owner=owner,
            last_attempt_at=now,
            sent_at=now,
        )

    def claimed(self, owner: str, lease_until: datetime, now: datetime) -> Delivery:
        """Taken for an attempt: what the claim wrote."""
        return replace(
            self,
            status=Status.SENDING,
            owner=owner,
            lease_until=lease_until,
            last_attempt_at=now,
            updated_at=now,
            attempts=self.attempts + 1,
        )

    def reopened(self, lease_until: datetime, now: datetime) -> Delivery:
        """A failed delivery tried again (its event was replayed from the DLQ)."""
        return replace(self, status=Status.PENDING, lease_until=lease_until, updated_at=now)

    def released(self, lease_until: datetime, now: datetime) -> Delivery:
        """A deferred delivery whose quiet hours ended: ready to go."""
        return replace(self, status=Status.PENDING, lease_until=lease_until, updated_at=now)

    def retrying(
        self, error: str, retry_at: datetime, lease_until: datetime, now: datetime
    ) -> Delivery:
        """The attempt failed, nothing was delivered; its holder tries again at
        ``retry_at``, anyone after ``lease_until``."""
        return replace(
            self,
            status=Status.RETRYING,
            last_error=error[:500],
            next_attempt_at=retry_at,
            lease_until=lease_until,
            updated_at=now,
        )

    @property
    def ready_at(self) -> datetime:
        """From when it could go out (planned, or the end of its quiet hours)."""
        at = self.not_before or self.created_at
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    # — documents —

    def to_doc(self) -> dict[str, Any]:
        """The stored document."""
        return {
            "_id": self.id,
            "notification_id": self.notification_id or notification_id(self.id),
            "event_id": self.event_id,
            "event_type": self.event_type,
            "request_id": self.request_id,
            "case_id": self.case_id,
            "recipient": self.recipient,
            "recipient_name": self.recipient_name,
            "recipient_kind": self.recipient_kind,
            "staff": self.staff,
            "channel": self.channel.value,
            "template": self.template,
            "critical": self.critical,
            "fallback": self.fallback,
            "markdown": self.markdown,
            "message": self.message.as_doc(),
            # submitters' phone numbers stay here, in notify's own database, and nowhere else
            "address": dict(self.address),
            "status": self.status.value,
            "not_before": self.not_before,
            "lease_until": self.lease_until,
            "attempts": self.attempts,
            "owner": self.owner,
            "last_attempt_at": self.last_attempt_at,
            "next_attempt_at": self.next_attempt_at,
            "sent_at": self.sent_at,
            "failed_at": self.failed_at,
            "last_error": self.last_error,
            "provider_id": self.provider_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Delivery:
        """A stored document back (fields a document lacks take their defaults)."""
        did = str(doc["_id"])
        created = _aware(doc.get("created_at")) or datetime.now(UTC)
        return cls(
            id=did,
            notification_id=str(doc.get("notification_id") or notification_id(did)),
            event_id=str(doc["event_id"]),
            event_type=str(doc["event_type"]),
            request_id=str(doc.get("request_id") or ""),
            case_id=doc.get("case_id"),
            recipient=str(doc["recipient"]),
            recipient_name=str(doc.get("recipient_name") or doc["recipient"]),
            recipient_kind=str(doc.get("recipient_kind") or ""),
            staff=bool(doc.get("staff")),
            channel=NotifyChannel(doc.get("channel") or channel_of(did)),
            template=str(doc.get("template") or ""),
            critical=bool(doc.get("critical")),
            fallback=bool(doc.get("fallback")),
            markdown=bool(doc.get("markdown")),
            message=Message.from_doc(doc.get("message") or {}),
            address={str(k): str(v) for k, v in (doc.get("address") or {}).items()},
            status=Status(doc["status"]),
            not_before=_aware(doc.get("not_before")),
            lease_until=_aware(doc.get("lease_until")),
            attempts=int(doc.get("attempts") or 0),
            owner=doc.get("owner"),
            last_attempt_at=_aware(doc.get("last_attempt_at")),
            next_attempt_at=_aware(doc.get("next_attempt_at")),
            sent_at=_aware(doc.get("sent_at")),
            failed_at=_aware(doc.get("failed_at")),
            last_error=doc.get("last_error"),
            provider_id=doc.get("provider_id"),
            created_at=created,
            updated_at=_aware(doc.get("updated_at")) or created,
        )


def planned(
    *,
    event_id: str,
    event_type: str,
    request_id: str,
    case_id: str | None,
    plan: Planned,
    markdown: bool,
    now: datetime,
    lease_until: datetime,
) -> Delivery:
    """A delivery the planner decided on: ``pending``, or ``deferred`` until the end of its
    recipient's quiet hours. Its event's handler holds it until ``lease_until`` (then a
    sweep may resume it)."""
    did = delivery_id(event_id, plan.recipient.id, plan.channel.value)
    return Delivery(
        id=did,
        notification_id=notification_id(did),
        event_id=event_id,
        event_type=event_type,
        request_id=request_id,
        case_id=case_id,
        recipient=plan.recipient.id,
        recipient_name=plan.recipient.name,
        recipient_kind=plan.recipient.kind.value,
        staff=plan.recipient.kind in STAFF_KINDS,
        channel=plan.channel,
        template=plan.template,
        critical=plan.critical,
        fallback=plan.fallback,
        markdown=markdown,
        message=plan.message,
        address=dict(plan.recipient.addresses),
        status=Status.DEFERRED if plan.not_before else Status.PENDING,
        not_before=plan.not_before.astimezone(UTC) if plan.not_before else None,
        lease_until=lease_until,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
