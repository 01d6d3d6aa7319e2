"""Events of ``tongxin.cases.v1`` (owned by routing)."""

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


MODELS: tuple[type[Event], ...] = (CaseRouted,)
