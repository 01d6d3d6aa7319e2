"""Pure rules of intake: what a valid request is, its id, its tracking code, masking."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    UrlConstraints,
    field_validator,
    model_validator,
)

from tongxin.contracts.enums import Category, Channel, Rating, Tier, Urgency
from tongxin.contracts.events import GeoPoint, RequestStatus

MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
# China Standard Time (no daylight saving): request ids carry the local date.
CST = timezone(timedelta(hours=8), "CST")
MAX_ATTACHMENTS = 9
MAX_URL_LENGTH = 1024

AttachmentUrl = Annotated[
    HttpUrl, UrlConstraints(max_length=MAX_URL_LENGTH, allowed_schemes=["http", "https"])
]


class Base(BaseModel):
    """Project base model: unknown fields are refused on input."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubmitterIn(Base):
    """Who raises the need."""

    name: str = Field(min_length=1, max_length=40)
    phone: str | None = Field(default=None, description="Mainland mobile number, 11 digits")
    party_member: bool = False

    @field_validator("phone")
    @classmethod
    def _mobile(cls, v: str | None) -> str | None:
        if v is None:
            return v
        digits = v.replace(" ", "").replace("-", "")
        if digits.startswith("+86"):
            digits = digits[3:]
        if not MOBILE_RE.match(digits):
            raise ValueError("must be a mainland mobile number such as 13812345678")
        return digits


class RequestCreate(Base):
    """Body of ``POST /v1/requests``."""

    channel: Channel = Channel.APP
    category: Category
    title: str = Field(min_length=2, max_length=80)
    description: str = Field(min_length=5, max_length=2000)
    community: str = Field(min_length=1, max_length=64)
    compound: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=200)
    location: GeoPoint | None = None
    urgency: Urgency = Urgency.NORMAL
    vulnerable: bool = False
    submitter: SubmitterIn
    attributes: dict[str, Any] = Field(
        default_factory=dict, max_length=20, description="Typed extras of the category"
    )
    attachments: list[AttachmentUrl] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)

    @model_validator(mode="after")
    def _where(self) -> RequestCreate:
        if self.location is None and not self.address and not self.compound:
            raise ValueError("give a compound, an address or a location")
        return self


class RequestCreated(BaseModel):
    """Answer of ``POST /v1/requests``."""

    id: str
    tracking_code: str
    status: str
    duplicate_of: str | None = None


class InboundSubmitter(SubmitterIn):
    """A submitter on the inbound topic: unknown fields are ignored (SPEC §3)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class InboundRequest(RequestCreate):
    """``data`` of an inbound ``request.submitted``: validated like HTTP, unknown fields
    ignored, the channel defaults to ``platform``."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    channel: Channel = Channel.PLATFORM
    submitter: InboundSubmitter


class FeedbackCreate(Base):
    """Body of ``POST /v1/requests/{id}/feedback`` (回访)."""

    tracking_code: str | None = Field(default=None, max_length=64)
    rating: Rating
    comment: str | None = Field(default=None, max_length=500)


class WithdrawCreate(Base):
    """Body of ``POST /v1/requests/{id}/withdraw``."""

    tracking_code: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=200)


def format_request_id(prefix: str, day: date, n: int) -> str:
    """``YS-YYYYMMDD-NNNNNN``."""
    return f"{prefix}-{day:%Y%m%d}-{n:06d}"


def local_day(at: datetime) -> date:
    """The county's calendar day of an instant (ids use it)."""
    return at.astimezone(CST).date()


def to_millis(at: datetime) -> datetime:
    """Truncate to milliseconds, the database's precision (cursors compare exactly)."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def new_tracking_code() -> str:
    """An unguessable code (96 bits) a resident uses to follow the request."""
    return secrets.token_urlsafe(12)


def hash_code(code: str) -> str:
    """What is stored instead of the tracking code."""
    return hashlib.sha256(code.encode()).hexdigest()


def code_matches(code: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented code with the stored hash."""
    return hmac.compare_digest(hash_code(code), stored_hash)


def body_fingerprint(body: RequestCreate) -> str:
    """Stable hash of a request body (Idempotency-Key: same key must mean same body)."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def mask_phone(phone: str | None) -> str | None:
    """``13812341234`` → ``138****1234``."""
    if not phone or len(phone) < 7:
        return None if not phone else "****"
    return f"{phone[:3]}****{phone[-4:]}"


def mask_name(name: str) -> str:
    """``张三丰`` → ``张**``."""
    return name[:1] + "*" * max(1, len(name) - 1)


def public_status(
    req: StoredRequest, status: str, note: str, changed_at: datetime, previous: str | None
) -> RequestStatus:
    """The masked ``request.status`` of a stored request: no name, no street address."""
    external = req.external or {}
    return RequestStatus(
        request_id=req.id,
        status=status,
        previous_status=previous,
        category=req.category,
        community=req.community,
        compound=req.compound,
        tier=req.tier,
        channel=req.channel,
        phone_masked=mask_phone(req.submitter.get("phone")),
        note=note,
        changed_at=changed_at,
        duplicate_of=req.duplicate_of,
        external_source=external.get("source"),
        external_id=external.get("id"),
    )


class StoredRequest(BaseModel):
    """A request as intake keeps it (its aggregate): what was submitted, where it stands,
    its timeline. ``rev`` grows with every change and is the condition of every write."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, use_enum_values=True)

    id: str = Field(alias="_id")
    channel: Channel
    category: Category
    title: str
    description: str
    community: str
    compound: str | None = None
    address: str | None = None
    location: dict[str, Any] | None = None
    urgency: Urgency = Urgency.NORMAL
    vulnerable: bool = False
    submitter: dict[str, Any] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    attachments: list[str] = Field(default_factory=list)
    tracking_hash: str
    status: str
    submitted_at: datetime
    status_changed_at: datetime
    rev: int = 0
    event_id: str | None = None
    submitted_by: str | None = None
    external: dict[str, str] | None = None
    duplicate_of: str | None = None
    duplicate_score: float | None = None
    duplicate_unlinked: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] = Field(default_factory=list)
    # what routing and volunteers made of it (the timeline consumer keeps these)
    case_id: str | None = None
    tier: Tier | None = None
    units: list[str] | None = None
    rule: str | None = None
    level: str | None = None
    escalated_to: str | None = None
    acknowledge_by: datetime | None = None
    resolve_by: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    # 回访
    resolution_round: int = 0
    awaiting_feedback: bool = False
    feedback_due: datetime | None = None
    feedback: list[dict[str, Any]] = Field(default_factory=list)
    last_rating: str | None = None
    # withdrawal and retention
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None
    contact_purged_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StoredRequest:
        """Read a stored document."""
        return cls.model_validate(doc)

    def to_doc(self) -> dict[str, Any]:
        """The document to store (``_id`` is the request id; unset optional fields are
        left out, as views and queries expect)."""
        doc = self.model_dump(by_alias=True, exclude_none=True)
        for always in ("duplicate_of",):  # listed and filtered on even when empty
            doc.setdefault(always, None)
        return doc

    def with_changes(self, **changes: Any) -> StoredRequest:
        """A copy with ``changes`` applied (``rev`` is the writer's business)."""
        return self.model_copy(update=changes, deep=True)
