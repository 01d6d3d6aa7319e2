"""Events of ``tongxin.volunteer.tasks.v1`` (owned by volunteer)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from tongxin.contracts.enums import CareType, Skill
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
    # optional (added later): which offer of this task this is, 1 for the first candidate
    attempt: int = 1


class TaskEvent(Event):
    """Common fields of a task's walk after the offer."""

    task_id: str
    case_id: str
    volunteer_id: str
    at: datetime
    # optional (added later): the offer of this task the event is about
    attempt: int = 1


class TaskAccepted(TaskEvent):
    """The volunteer accepted the offered task (emitted by volunteer)."""

    event_type: ClassVar[str] = "task.accepted"


class TaskDeclined(TaskEvent):
    """The volunteer declined; the task goes to the next candidate (emitted by volunteer)."""

    event_type: ClassVar[str] = "task.declined"

    reason: str | None = None


class TaskExpired(TaskEvent):
    """The offer's accept deadline passed; the task goes to the next candidate (volunteer)."""

    event_type: ClassVar[str] = "task.expired"


class TaskCompleted(TaskEvent):
    """The volunteer completed the task and recorded hours (emitted by volunteer)."""

    event_type: ClassVar[str] = "task.completed"

    hours: float
    note: str | None = None


class TaskUnmatched(Event):
    """No eligible volunteer was left for a case's task (emitted by volunteer)."""

    event_type: ClassVar[str] = "task.unmatched"

    task_id: str
    case_id: str
    skills: list[Skill]
    reason: str
    # optional (added later): the volunteers this task was offered to, in order
    tried: list[str] = Field(default_factory=list)


class CareVisitOverdue(Event):
    """A care recipient's visit was missed (emitted by volunteer).

    Not about a request: ``request_id`` (the record key) is ``care:<recipient id>``.
    """

    event_type: ClassVar[str] = "care.visit_overdue"

    recipient_id: str
    visit_id: str
    care_type: CareType
    community: str
    compound: str | None = None
    due_at: datetime
    volunteer_ids: list[str] = Field(default_factory=list)


MODELS: tuple[type[Event], ...] = (
    TaskOffered,
    TaskAccepted,
    TaskDeclined,
    TaskExpired,
    TaskCompleted,
    TaskUnmatched,
    CareVisitOverdue,
)
