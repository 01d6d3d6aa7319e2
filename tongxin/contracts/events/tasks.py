"""Events of ``tongxin.volunteer.tasks.v1`` (owned by volunteer)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from tongxin.contracts.enums import Skill
from tongxin.contracts.events.base import Event


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


MODELS: tuple[type[Event], ...] = (TaskOffered, TaskUnmatched)
