"""Events of ``tongxin.cases.v1`` (owned by routing) and the commands of
``tongxin.inbound.case-commands.v1`` (sent by department systems, handled by routing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tongxin.contracts.enums import Category, Skill, Tier
from tongxin.contracts.events.base import Event


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
    deliberation: bool = False
    revision: int = Field(
        default=0,
        description="0 when the case is first routed; 1, 2, … when the town committee or a "
        "joint meeting dispatched it again (reassignment). Revisions never ask for volunteers.",
    )
    accountable_unit: str | None = Field(
        default=None, description="The first receiver 首接单位, accountable for the case."
    )


class CaseEvent(Event):
    """Common fields of the case lifecycle events."""

    case_id: str
    unit: str | None = None
    by: str | None = None
    note: str | None = None
    at: datetime


class CaseAcknowledged(CaseEvent):
    """A unit acknowledged (reported in to) a case (emitted by routing)."""

    event_type: ClassVar[str] = "case.acknowledged"

    in_time: bool = True


class CaseProgressed(CaseEvent):
    """A unit reported progress on a case (emitted by routing)."""

    event_type: ClassVar[str] = "case.progressed"


class CaseResolved(CaseEvent):
    """A unit resolved a case; the resident is asked for feedback (emitted by routing)."""

    event_type: ClassVar[str] = "case.resolved"

    in_time: bool = True


class CaseReturned(CaseEvent):
    """A unit returned a case (退单) for reassignment by the town committee (emitted by routing)."""

    event_type: ClassVar[str] = "case.returned"

    reason: str


class CaseEscalated(CaseEvent):
    """A deadline was missed: the case went one level up with a new deadline (routing)."""

    event_type: ClassVar[str] = "case.escalated"

    from_level: str
    to_level: str
    to_unit: str
    reason: str
    deadline: datetime
    trigger: str = Field(
        default="deadline_missed",
        description="'deadline_missed' (a unit did not acknowledge in time) or 'whistle' "
        "(staff called a department onto the case; to_level is 'department').",
    )


class CaseReopened(CaseEvent):
    """A dissatisfied resident reopened a resolved case (emitted by routing)."""

    event_type: ClassVar[str] = "case.reopened"

    reason: str | None = None


class CaseClosed(CaseEvent):
    """A case ended: satisfied feedback, no feedback in time, or withdrawn (routing)."""

    event_type: ClassVar[str] = "case.closed"

    reason: str


class CaseCommand(Event):
    """A department system's command about a case (``tongxin.inbound.case-commands.v1``)."""

    case_id: str
    unit: str
    by: str | None = None
    note: str | None = None


class AcknowledgeCase(CaseCommand):
    """Command: the unit acknowledges (reports in to) the case."""

    event_type: ClassVar[str] = "case.acknowledge"


class ProgressCase(CaseCommand):
    """Command: the unit reports progress."""

    event_type: ClassVar[str] = "case.progress"


class ResolveCase(CaseCommand):
    """Command: the unit resolves the case."""

    event_type: ClassVar[str] = "case.resolve"


class ReturnCase(CaseCommand):
    """Command: the unit returns the case with a reason."""

    event_type: ClassVar[str] = "case.return"

    reason: str


MODELS: tuple[type[Event], ...] = (
    CaseRouted,
    CaseAcknowledged,
    CaseProgressed,
    CaseResolved,
    CaseReturned,
    CaseEscalated,
    CaseReopened,
    CaseClosed,
    AcknowledgeCase,
    ProgressCase,
    ResolveCase,
    ReturnCase,
)
