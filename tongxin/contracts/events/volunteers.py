"""Events of ``tongxin.volunteer.registry.v1`` (owned by volunteer): the red-vest registry's
lifecycle, so the accounts (and anyone else) keep in step with it.

Not about a request: ``request_id`` (the record key) is the volunteer id, so one
volunteer's events stay in order. No phone number, no address: the registry keeps them.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from tongxin.contracts.enums import Skill
from tongxin.contracts.events.base import Event


class VolunteerRegistered(Event):
    """Staff registered a red-vest volunteer (emitted by volunteer)."""

    event_type: ClassVar[str] = "volunteer.registered"

    volunteer_id: str
    name: str
    community: str | None = None
    skills: list[Skill] = Field(default_factory=list)
    # registered as inactive: kept in the registry, never offered a task
    active: bool = True
    at: datetime


class VolunteerDeactivated(Event):
    """Staff deactivated a volunteer: never offered a task again, their hours kept
    (emitted by volunteer)."""

    event_type: ClassVar[str] = "volunteer.deactivated"

    volunteer_id: str
    at: datetime


MODELS: tuple[type[Event], ...] = (VolunteerRegistered, VolunteerDeactivated)
