"""The task walk's rules: who may do what to a task in which state (no I/O).

offered → accepted → completed, or offered → (declined | expired) → offered to the next
candidate … → unmatched when nobody is left. A case that no longer needs help cancels a
task that is still being offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class TaskStatus(StrEnum):
    """Where a task is in its walk."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    UNMATCHED = "unmatched"
    CANCELLED = "cancelled"


OPEN_STATES = (TaskStatus.OFFERED, TaskStatus.ACCEPTED)


class Action(StrEnum):
    """What a volunteer does to a task."""

    ACCEPT = "accept"
    DECLINE = "decline"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an action is refused: HTTP status, stable code, message."""

    status: int
    code: str
    message: str


def check_action(
    action: Action,
    *,
    status: str,
    assignee: str | None,
    actor: str,
    actor_is_staff: bool,
    accept_by: datetime | None,
    now: datetime,
    offered_before: bool = False,
) -> Refusal | None:
    """None when ``actor`` may perform ``action`` now; otherwise the refusal.

    ``offered_before``: the task was offered to ``actor`` earlier (declined or expired), so
    an answer now is a conflict (409), not someone else's task (403).
    """
    if not actor_is_staff and assignee != actor:
        if offered_before:
            return Refusal(409, "offer_closed", "Your offer of this task ended (declined/expired).")
        return Refusal(403, "not_your_task", "This task is not offered to or held by you.")
    if actor_is_staff and action is not Action.COMPLETE:
        return Refusal(403, "forbidden", "Only the volunteer the task is offered to may answer.")
    if action in (Action.ACCEPT, Action.DECLINE):
        if status != TaskStatus.OFFERED:
            return Refusal(409, "task_not_offered", f"The task is {status}, not offered.")
        if accept_by is not None and now > accept_by:
            return Refusal(409, "offer_expired", "The accept deadline of this offer has passed.")
        return None
    if status != TaskStatus.ACCEPTED:
        return Refusal(409, "task_not_accepted", f"The task is {status}; accept it first.")
    return None
