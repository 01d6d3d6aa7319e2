"""Event models: the ``data`` of each CloudEvent on the topics (SPEC §3).

Events are named in the past tense; each carries its short type (``case.routed``) and
version. The CloudEvents ``type`` is ``tongxin.<type>.v<version>``. Consumers ignore
unknown fields (``extra="ignore"``) and unknown types.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tongxin.contracts.enums import Category, Channel, NotifyChannel, Skill, Tier, Urgency

CE_TYPE_PREFIX = "tongxin."


class Event(BaseModel):
    """Base of every published event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1

    request_id: str = Field(description="The request this event belongs to; the record key.")

    @classmethod
    def ce_type(cls) -> str:
        """The CloudEvents ``type`` attribute of this event."""
        return f"{CE_TYPE_PREFIX}{cls.event_type}.v{cls.version}"


class GeoPoint(BaseModel):
    """A WGS-84 point."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    lat: float
    lng: float


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


class RuleFired(BaseModel):
    """Which classification rule decided the tier, and the inputs it used."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    rule: str
    reason: str
    inputs: dict[str, Any] = Field(default_factory=dict)


class CaseRouted(Event):
    """Routing opened a case for a request, chose its tier and units (emitted by routing)."""

    event_type: ClassVar[str] = "case.routed"

    case_id: str
    tier: Tier
    category: Category
    community: str
    compound: str | None = None
    units: list[str]
    classification: RuleFired
    acknowledge_by: datetime
    resolve_by: datetime
    needs_volunteers: bool = False
    skills: list[Skill] = Field(default_factory=list)


class TaskOffered(Event):
    """A volunteer was offered a task for a case, with an accept deadline (emitted by volunteer)."""

    event_type: ClassVar[str] = "task.offered"

    task_id: str
    case_id: str
    volunteer_id: str
    volunteer_name: str
    skill: Skill
    accept_by: datetime
    scores: dict[str, float] = Field(default_factory=dict)


class TaskUnmatched(Event):
    """No eligible volunteer was left for a case's task (emitted by volunteer)."""

    event_type: ClassVar[str] = "task.unmatched"

    task_id: str
    case_id: str
    skills: list[Skill]
    reason: str


class NotificationSent(Event):
    """A message about an event reached a recipient over a channel (emitted by notify)."""

    event_type: ClassVar[str] = "notification.sent"

    notification_id: str
    source_event_id: str
    source_event_type: str
    recipient: str
    channel: NotifyChannel
    sent_at: datetime


EVENT_MODELS: dict[str, type[Event]] = {
    m.ce_type(): m
    for m in (RequestSubmitted, CaseRouted, TaskOffered, TaskUnmatched, NotificationSent)
}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (event type, from version) -> function turning that version's data into the next one.
# Old payloads are upgraded here, in one place, before a model parses them.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def parse_ce_type(ce_type: str) -> tuple[str, int] | None:
    """Split ``tongxin.case.routed.v1`` into ``("case.routed", 1)``; None if not ours."""
    if not ce_type.startswith(CE_TYPE_PREFIX):
        return None
    body, _, version = ce_type[len(CE_TYPE_PREFIX) :].rpartition(".v")
    if not body or not (version.isascii() and version.isdigit()):
        return None
    return body, int(version)


def upcast(
    event_type: str,
    version: int,
    data: dict[str, Any],
    upcasters: dict[tuple[str, int], Upcaster] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Apply the chain of upcasters from ``version`` as far as it goes."""
    table = UPCASTERS if upcasters is None else upcasters
    while (event_type, version) in table:
        data = table[(event_type, version)](data)
        version += 1
    return version, data


def event_model_for(ce_type: str) -> type[Event] | None:
    """The model for a CloudEvents type, or None for a type this code does not know."""
    return EVENT_MODELS.get(ce_type)


def parse_event(ce_type: str, data: dict[str, Any]) -> Event | None:
    """Parse ``data`` of ``ce_type`` into its model, upcasting old versions; None if unknown."""
    parsed = parse_ce_type(ce_type)
    if parsed is None:
        return None
    event_type, version = parsed
    version, data = upcast(event_type, version, data)
    model = event_model_for(f"{CE_TYPE_PREFIX}{event_type}.v{version}")
    return None if model is None else model.model_validate(data)
