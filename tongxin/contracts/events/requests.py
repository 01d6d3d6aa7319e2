"""Events of ``tongxin.requests.v1`` (owned by intake)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tongxin.contracts.enums import Category, Channel, Urgency
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


MODELS: tuple[type[Event], ...] = (RequestSubmitted,)
