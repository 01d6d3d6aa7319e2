"""The red-vest registry as stored: volunteers, squads, the brigade and hours of service
(no I/O). Each record keeps fields it does not know (an edited seed file's) in ``extra``
and writes them back unchanged; ``version`` counts its stored writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from services.volunteer.domain.availability import Window, parse_hhmm
from services.volunteer.domain.matching import Candidate
from tongxin.contracts.enums import Skill
from tongxin.contracts.events import Event, VolunteerDeactivated, VolunteerRegistered

BRIGADE_ID = "brigade"


def _to_doc(record: Any, record_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = asdict(record)
    extra = doc.pop("extra", {})
    doc.pop("id", None)
    return {**extra, "_id": record_id, **doc}


def _split(cls: type[Any], doc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored document as (the record's fields, everything else)."""
    known = {f.name for f in fields(cls)} - {"id", "extra"}
    mine = {k: v for k, v in doc.items() if k in known}
    extra = {k: v for k, v in doc.items() if k not in known and k not in ("_id", "id")}
    mine["version"] = int(doc.get("version") or 0)
    return mine, extra


def _change(record: Any, changes: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(record)} - {"id", "extra", "version"}
    for key, value in changes.items():
        if key in known:
            setattr(record, key, value)
        else:
            record.extra[key] = value


@dataclass
class Volunteer:
    """A red-vest volunteer: who, what skills, where, when available, how much load."""

    id: str
    name: str
    skills: list[str]
    community: str | None = None
    compound: str | None = None
    phone: str | None = None
    party_member: bool = False
    in_service_unit: str | None = None
    lat: float | None = None
    lng: float | None = None
    # weekly windows as stored: {"day": 0 = Monday … 6, "start": "HH:MM", "end": "HH:MM"}
    availability: list[dict[str, Any]] = field(default_factory=list)
    max_tasks: int = 3
    active: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        """The database document (``_id`` is the volunteer id)."""
        return _to_doc(self, self.id)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Volunteer:
        """Read a stored volunteer (or a seed entry, with ``_id``)."""
        mine, extra = _split(cls, doc)
        return cls(id=doc["_id"], **mine, extra=extra)

    def change(self, changes: Mapping[str, Any], now: datetime) -> None:
        """Apply a registry change (already validated)."""
        _change(self, changes)
        self.updated_at = now

    def windows(self) -> tuple[Window, ...]:
        """The availability windows as domain values."""
        return tuple(
            Window(int(w["day"]), parse_hhmm(w["start"]), parse_hhmm(w["end"]))
            for w in self.availability
        )

    def candidate(self, open_tasks: int, recent_tasks: int, recent_hours: float) -> Candidate:
        """The volunteer as matching sees them, with their load and recent work
        (``recent_tasks`` counts completed tasks and visits in the fairness window)."""
        return Candidate(
            id=self.id,
            name=self.name,
            skills=frozenset(Skill(s) for s in self.skills),
            community=self.community,
            compound=self.compound,
            lat=self.lat,
            lng=self.lng,
            max_tasks=self.max_tasks,
            open_tasks=open_tasks,
            recent_tasks=recent_tasks + open_tasks,
            recent_hours=recent_hours,
            windows=self.windows(),
            active=self.active,
        )


def registry_events(before: Volunteer | None, after: Volunteer, now: datetime) -> list[Event]:
    """What a registry change publishes: a new volunteer is ``volunteer.registered``; an
    active one made inactive is ``volunteer.deactivated``; any other edit, nothing."""
    if before is None:
        registered = VolunteerRegistered(
            request_id=after.id,
            volunteer_id=after.id,
            name=after.name,
            community=after.community,
            skills=[Skill(s) for s in after.skills],
            active=after.active,
            at=now,
        )
        return [registered]
    if before.active and not after.active:
        return [VolunteerDeactivated(request_id=after.id, volunteer_id=after.id, at=now)]
    return []


@dataclass
class Squad:
    """A squad 小分队 of the brigade: one skill, a captain."""

    id: str
    name: str
    skill: str
    captain_id: str | None = None
    description: str | None = None
    created_at: datetime | None = None
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        """The database document (``_id`` is the squad id)."""
        return _to_doc(self, self.id)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Squad:
        """Read a stored squad (or a seed entry, with ``_id``)."""
        mine, extra = _split(cls, doc)
        return cls(id=doc["_id"], **mine, extra=extra)

    def change(self, changes: Mapping[str, Any]) -> None:
        """Rename it or change its captain (already validated)."""
        _change(self, changes)


@dataclass
class Brigade:
    """The red-vest brigade 红马甲服务队 and its leader (one document)."""

    name: str | None = None
    leader: str | None = None
    leader_title: str | None = None
    version: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        """The database document (``_id`` is ``brigade``)."""
        return _to_doc(self, BRIGADE_ID)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Brigade:
        """Read the stored brigade (or the seed's)."""
        mine, extra = _split(cls, doc)
        return cls(**mine, extra=extra)

    def change(self, changes: Mapping[str, Any]) -> None:
        """Change its name or leader."""
        _change(self, changes)


@dataclass
class ServiceHours:
    """Hours of one completed task or care visit (``id`` is the task's or the visit's)."""

    id: str
    kind: str  # "task" or "care_visit"
    volunteer_id: str
    hours: float
    skill: str | None
    community: str | None
    at: datetime
    note: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The database document."""
        doc = asdict(self)
        doc["_id"] = doc.pop("id")
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ServiceHours:
        """Read a stored entry."""
        d = {k: v for k, v in doc.items() if k in _HOURS_FIELDS}
        return cls(id=doc["_id"], **d)


_HOURS_FIELDS = {f.name for f in fields(ServiceHours)} - {"id"}
