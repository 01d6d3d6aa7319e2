"""Events of ``tongxin.requests.v1`` and ``tongxin.public.status.v1`` (owned by intake)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tongxin.contracts.enums import Category, Channel, Rating, Tier, Urgency
from tongxin.contracts.events.base import Event, GeoPoint


class Submitter(BaseModel):
    """Who raised a request. Contact details travel only on ``tongxin.requests.v1``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    phone: str | None = None
    party_member: bool = False


class RequestSubmitted(Event):
    """A resident's need was accepted by intake (emitted by intake)."""

    event_type: ClassVar[str] = "request.submitted"

    channel: Channel
    category: Category
    title: str
    description: str
    community: str
    compound: str | None = None
    address: str | None = None
    location: GeoPoint | None = None
    urgency: Urgency = Urgency.NORMAL
    vulnerable: bool = False
    submitter: Submitter
    attributes: dict[str, Any] = Field(default_factory=dict)
    submitted_at: datetime
    attachments: list[str] = Field(default_factory=list)
    duplicate_of: str | None = Field(
        default=None, description="An open request in the same compound and category it repeats."
    )
    external_source: str | None = Field(
        default=None, description="ce_source of the inbound event it came from (another platform)."
    )
    external_id: str | None = Field(
        default=None, description="ce_id of the inbound event it came from."
    )


class RequestFeedbackGiven(Event):
    """The resident rated a resolved request; dissatisfied reopens it (emitted by intake)."""

    event_type: ClassVar[str] = "request.feedback_given"

    case_id: str | None = None
    rating: Rating
    comment: str | None = None
    given_at: datetime
    resolution_round: int | None = Field(
        default=None, description="Which resolution was rated (1 = first; reopening adds one)."
    )


class RequestWithdrawn(Event):
    """The resident withdrew the request before resolution (emitted by intake)."""

    event_type: ClassVar[str] = "request.withdrawn"

    reason: str | None = None
    withdrawn_at: datetime
    case_id: str | None = None


class RequestStatus(Event):
    """A request's status changed — masked for other platforms (``tongxin.public.status.v1``).

    Carries no name, no street address; the phone only masked (``138****1234``).
    """

    event_type: ClassVar[str] = "request.status"

    status: str
    category: Category
    community: str
    compound: str | None = None
    tier: Tier | None = None
    phone_masked: str | None = None
    note: str | None = None
    changed_at: datetime
    previous_status: str | None = None
    channel: Channel | None = None
    duplicate_of: str | None = None
    external_source: str | None = Field(
        default=None, description="For requests from another platform: its ce_source."
    )
    external_id: str | None = Field(
        default=None, description="For requests from another platform: its ce_id."
    )


MODELS: tuple[type[Event], ...] = (
    RequestSubmitted,
    RequestFeedbackGiven,
    RequestWithdrawn,
    RequestStatus,
)
