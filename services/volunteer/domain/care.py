"""Special-care visits (未诉先办): cadence, visitor rotation, overdue rule (no I/O).

Visit ``k`` of a recipient becomes due at ``first_due + (k-1) * cadence``; it must be
recorded within the visit window, or it is overdue and staff are alerted. The cadence
continues whether or not a visit was made, so a missed visit never stops the schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from tongxin.contracts.enums import CareType, Skill


class VisitStatus(StrEnum):
    """Where a care visit is."""

    OPEN = "open"
    COMPLETED = "completed"
    OVERDUE = "overdue"
    CANCELLED = "cancelled"


# The skill a visit counts toward (for squad hours).
CARE_SKILL: dict[CareType, Skill] = {
    CareType.ELDERLY_ALONE: Skill.ELDER_CARE,
    CareType.DISABLED: Skill.ELDER_CARE,
    CareType.HARDSHIP: Skill.CHARITY,
    CareType.LEFT_BEHIND_CHILD: Skill.TUTORING,
}


def visit_due(first_due: datetime, cadence: timedelta, seq: int) -> datetime:
    """When visit ``seq`` (1-based) becomes due."""
    if seq < 1:
        raise ValueError("visits are numbered from 1")
    return first_due + cadence * (seq - 1)


def visit_deadline(due_at: datetime, window: timedelta, cadence: timedelta) -> datetime:
    """When an unrecorded visit becomes overdue: the window, never past the next visit."""
    return due_at + min(window, cadence)


def visitor_for(assigned: Sequence[str], seq: int) -> str | None:
    """The assigned volunteers take turns, visit by visit; None when nobody is assigned."""
    if not assigned:
        return None
    return assigned[(seq - 1) % len(assigned)]


def visit_id(recipient_id: str, seq: int) -> str:
    """Stable id of a recipient's visit ``seq``."""
    return f"V-{recipient_id.replace(':', '-')}-{seq:04d}"
