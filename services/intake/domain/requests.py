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

from tongxin.contracts.enums import Category, Channel, Rating, Urgency
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
    doc: dict[str, Any], status: str, note: str, changed_at: datetime, previous: str | None
) -> RequestStatus:
    """The masked ``request.status`` of a stored request: no name, no street address."""
    external = doc.get("external") or {}
    return RequestStatus(
        request_id=doc["_id"],
        status=status,
        previous_status=previous,
        category=doc["category"],
        community=doc["community"],
        compound=doc.get("compound"),
        tier=doc.get("tier"),
        channel=doc.get("channel"),
        phone_masked=mask_phone((doc.get("submitter") or {}).get("phone")),
        note=note,
        changed_at=changed_at,
        duplicate_of=doc.get("duplicate_of"),
        external_source=external.get("source"),
        external_id=external.get("id"),
    )
