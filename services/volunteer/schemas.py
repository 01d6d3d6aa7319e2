"""Request and response bodies of volunteer's API (XCreate / XUpdate on one base model)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.volunteer.domain.availability import Window, format_hhmm, parse_hhmm
from tongxin.contracts.enums import CareType, Skill

PHONE = r"^1[3-9]\d{9}$"
ID = r"^[a-z][a-z0-9-]*:[A-Za-z0-9._-]{1,40}$"
Name = Annotated[str, Field(min_length=1, max_length=40)]
Note = Annotated[str, Field(max_length=500)]
Hours = Annotated[
    float, Field(gt=0, le=24, description="Hours of service, more than 0, at most 24.")
]


class Body(BaseModel):
    """Base of every request body: unknown fields are an error, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class WindowIn(Body):
    """A weekly availability window: day 0 = Monday … 6 = Sunday, local time."""

    day: int = Field(ge=0, le=6)
    start: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["18:00"])
    end: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["21:00"])

    @model_validator(mode="after")
    def _ordered(self) -> WindowIn:
        try:
            Window(self.day, parse_hhmm(self.start), parse_hhmm(self.end))
        except ValueError as exc:
            raise ValueError(f"invalid window: {exc}") from exc
        return self

    def to_window(self) -> Window:
        """The domain value."""
        return Window(self.day, parse_hhmm(self.start), parse_hhmm(self.end))

    @classmethod
    def of(cls, w: Window) -> WindowIn:
        """From the domain value."""
        return cls(day=w.day, start=format_hhmm(w.start_min), end=format_hhmm(w.end_min))


def _unique_skills(v: list[Skill] | None) -> list[Skill] | None:
    if v is None:
        return v
    if len(set(v)) != len(v):
        raise ValueError("skills must not repeat")
    return v


class VolunteerCreate(Body):
    """Register a red-vest volunteer (staff)."""

    id: str | None = Field(default=None, pattern=ID, examples=["vol:101"])
    name: Name
    phone: str | None = Field(default=None, pattern=PHONE)
    skills: list[Skill] = Field(min_length=1, max_length=8)
    party_member: bool = False
    # 双报到: an in-service party member registered by their unit
    in_service_unit: str | None = Field(default=None, max_length=64)
    community: str = Field(max_length=64)
    compound: str | None = Field(default=None, max_length=64)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lng: float | None = Field(default=None, ge=-180, le=180)
    availability: list[WindowIn] = Field(default_factory=list, max_length=28)
    max_tasks: int = Field(default=3, ge=1, le=10)
    active: bool = True

    _skills = field_validator("skills")(_unique_skills)


class VolunteerUpdate(Body):
    """Change a volunteer (staff; a volunteer may change their own availability only)."""

    name: Name | None = None
    phone: str | None = Field(default=None, pattern=PHONE)
    skills: list[Skill] | None = Field(default=None, min_length=1, max_length=8)
    party_member: bool | None = None
    in_service_unit: str | None = Field(default=None, max_length=64)
    community: str | None = Field(default=None, max_length=64)
    compound: str | None = Field(default=None, max_length=64)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lng: float | None = Field(default=None, ge=-180, le=180)
    availability: list[WindowIn] | None = Field(default=None, max_length=28)
    max_tasks: int | None = Field(default=None, ge=1, le=10)
    active: bool | None = None

    _skills = field_validator("skills")(_unique_skills)


class SquadCreate(Body):
    """A squad 小分队 of the brigade, by skill, with a captain (staff)."""

    id: str | None = Field(default=None, pattern=ID, examples=["squad:legal"])
    name: Name
    skill: Skill
    captain_id: str | None = Field(default=None, max_length=64)
    description: Note | None = None


class SquadUpdate(Body):
    """Change a squad (staff)."""

    name: Name | None = None
    captain_id: str | None = Field(default=None, max_length=64)
    description: Note | None = None


class DeclineIn(Body):
    """Decline an offered task."""

    reason: Note | None = None


class CompleteIn(Body):
    """Complete an accepted task, recording hours and a note."""

    hours: Hours
    note: Note | None = None


class CareRecipientCreate(Body):
    """Register a special-care recipient 特殊关爱对象 (staff; consent is required)."""

    id: str | None = Field(default=None, pattern=ID, examples=["care:101"])
    name: Name
    care_type: CareType
    community: str = Field(max_length=64)
    compound: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, pattern=PHONE)
    cadence_days: int = Field(default=7, ge=1, le=90, description="A visit every N days.")
    assigned_volunteers: list[str] = Field(default_factory=list, max_length=5)
    consent: bool = Field(description="The resident (or guardian) agreed to registration.")
    consent_note: Note | None = None
    notes: Note | None = None

    @field_validator("consent")
    @classmethod
    def _consent_given(cls, v: bool) -> bool:
        if not v:
            raise ValueError("a recipient is registered only with their consent")
        return v

    @field_validator("assigned_volunteers")
    @classmethod
    def _unique_assigned(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("assigned volunteers must not repeat")
        return v


class CareRecipientUpdate(Body):
    """Change a recipient (staff). ``active: false`` stops the visits."""

    name: Name | None = None
    address: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, pattern=PHONE)
    cadence_days: int | None = Field(default=None, ge=1, le=90)
    assigned_volunteers: list[str] | None = Field(default=None, max_length=5)
    notes: Note | None = None
    active: bool | None = None

    @field_validator("assigned_volunteers")
    @classmethod
    def _unique_assigned(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("assigned volunteers must not repeat")
        return v


class VisitRecordIn(Body):
    """Record a care visit that was made."""

    hours: Hours
    note: Note | None = None
    visited_at: datetime | None = None


class BrigadeUpdate(Body):
    """The brigade 红马甲服务队 (staff)."""

    name: Name | None = None
    leader: Name | None = None
    leader_title: Name | None = None
