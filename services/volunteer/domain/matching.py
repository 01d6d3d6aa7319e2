"""Explainable volunteer matching: skill, availability, proximity, load and fairness.

Pure functions: the service loads candidates and their recent work, this module filters
and ranks. Hard rules first — a candidate is never offered a task when inactive, already
tried for this task (declined or let the offer expire), at or above their maximum load,
without any of the needed skills, or not available at any time in the need's period.
The rest are scored in [0, 1] and weighted; the breakdown travels with each offer.
Ranking is deterministic for the same data: ties are broken by volunteer id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from services.volunteer.domain.availability import Window, first_available
from tongxin.contracts.enums import Skill

WEIGHTS: dict[str, float] = {
    "skill": 0.15,
    "availability": 0.15,
    "proximity": 0.30,
    "load": 0.15,
    "fairness": 0.25,
}
# Fairness counts recent work: one task weighs as much as this many hours.
HOURS_PER_TASK = 4.0


class Exclusion(StrEnum):
    """Why a candidate is not eligible (kept, counted, with each match)."""

    INACTIVE = "inactive"
    TRIED = "already_tried"
    OVERLOADED = "overloaded"
    SKILL = "no_skill"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A volunteer as matching sees them."""

    id: str
    name: str
    skills: frozenset[Skill]
    community: str | None
    compound: str | None
    lat: float | None
    lng: float | None
    max_tasks: int
    open_tasks: int = 0
    recent_tasks: int = 0  # within the fairness window (30 days by default)
    recent_hours: float = 0.0
    windows: tuple[Window, ...] = ()
    active: bool = True


@dataclass(frozen=True, slots=True)
class Need:
    """What a task needs: skills, where, and the period in which the help is wanted."""

    skills: tuple[Skill, ...]
    community: str
    start: datetime
    end: datetime
    compound: str | None = None
    lat: float | None = None
    lng: float | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)  # tried for this task already


@dataclass(frozen=True, slots=True)
class Ranked:
    """An eligible candidate with the skill used, first free instant, and the breakdown."""

    candidate: Candidate
    skill: Skill
    available_at: datetime
    scores: dict[str, float]

    @property
    def total(self) -> float:
        """Weighted total."""
        return self.scores["total"]


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The ranking plus how many candidates each hard rule left out."""

    ranked: list[Ranked]
    excluded: dict[str, int]

    @property
    def best(self) -> Ranked | None:
        """The candidate to offer the task to, if any."""
        return self.ranked[0] if self.ranked else None


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def distance_km(c: Candidate, need: Need) -> float | None:
    """Distance between the volunteer's home and the need, when both are known."""
    if c.lat is None or c.lng is None or need.lat is None or need.lng is None:
        return None
    return haversine_km(c.lat, c.lng, need.lat, need.lng)


def proximity(c: Candidate, need: Need) -> float:
    """1 for the same compound, 0.7 for the same community, then decaying with distance."""
    if need.compound and c.compound == need.compound:
        return 1.0
    if c.community == need.community:
        return 0.7
    km = distance_km(c, need)
    if km is not None:
        return round(0.6 / (1.0 + km), 4)
    return 0.0


def availability_score(available_at: datetime, need: Need) -> float:
    """1 when free at the start of the need, decaying by the day of waiting."""
    hours = max(0.0, (available_at - need.start).total_seconds() / 3600)
    return round(1.0 / (1.0 + hours / 24.0), 4)


def fairness(c: Candidate) -> float:
    """Fewer recent tasks and hours → higher (1 for someone with no recent work)."""
    return round(1.0 / (1.0 + (c.recent_tasks + c.recent_hours / HOURS_PER_TASK) / 2.0), 4)


def exclusion(
    c: Candidate, need: Need, activity_days: Iterable[Window] = ()
) -> tuple[Exclusion | None, Skill | None, datetime | None]:
    """The hard rules: (why excluded or None, skill used, first available instant)."""
    if not c.active:
        return Exclusion.INACTIVE, None, None
    if c.id in need.exclude:
        return Exclusion.TRIED, None, None
    if c.open_tasks >= c.max_tasks:
        return Exclusion.OVERLOADED, None, None
    skill = next((s for s in need.skills if s in c.skills), None)
    if skill is None:
        return Exclusion.SKILL, None, None
    at = first_available((*c.windows, *activity_days), need.start, need.end)
    if at is None:
        return Exclusion.UNAVAILABLE, skill, None
    return None, skill, at


def score(c: Candidate, need: Need, available_at: datetime) -> dict[str, float]:
    """The score breakdown of an eligible candidate (components, weighted total)."""
    wanted = set(need.skills)
    parts = {
        "skill": round(len(wanted & c.skills) / max(1, len(wanted)), 4),
        "availability": availability_score(available_at, need),
        "proximity": proximity(c, need),
        "load": round(1.0 - c.open_tasks / max(1, c.max_tasks), 4),
        "fairness": fairness(c),
    }
    total = round(sum(WEIGHTS[k] * v for k, v in parts.items()), 4)
    km = distance_km(c, need)
    extra = {"distance_km": round(km, 3)} if km is not None else {}
    return {**parts, **extra, "total": total}


def match(
    candidates: Iterable[Candidate], need: Need, activity_days: Iterable[Window] = ()
) -> MatchResult:
    """Eligible candidates best first (ties by id), and the count of each exclusion."""
    days = tuple(activity_days)
    ranked: list[Ranked] = []
    excluded: dict[str, int] = {}
    for c in candidates:
        why, skill, at = exclusion(c, need, days)
        if why is not None or skill is None or at is None:
            key = (why or Exclusion.UNAVAILABLE).value
            excluded[key] = excluded.get(key, 0) + 1
            continue
        ranked.append(Ranked(c, skill, at, score(c, need, at)))
    ranked.sort(key=lambda r: (-r.total, r.candidate.id))
    return MatchResult(ranked, excluded)


def rank(
    candidates: Iterable[Candidate], need: Need, activity_days: Iterable[Window] = ()
) -> list[Ranked]:
    """Eligible candidates, best first, each with its score breakdown."""
    return match(candidates, need, activity_days).ranked


@dataclass
class Pool:
    """The candidates of one batch, and the work the batch gave them so far.

    Loaded once for a whole batch (active volunteers with the skills it needs, their open
    tasks and recent work); each offer, answer and completion in the batch moves the loads
    here, so a later task of the batch is matched on what an earlier one changed — exactly
    as if they had been decided one after the other.
    """

    by_id: dict[str, Candidate] = field(default_factory=dict)

    def for_skills(self, skills: Iterable[Skill]) -> list[Candidate]:
        """The candidates with any of ``skills`` (by id)."""
        wanted = set(skills)
        return [c for _, c in sorted(self.by_id.items()) if c.skills & wanted]

    def holds(self, volunteer_id: str | None, delta: int) -> None:
        """``volunteer_id`` holds ``delta`` more open tasks (offered or accepted)."""
        c = self.by_id.get(volunteer_id or "")
        if c is not None:
            self.by_id[c.id] = replace(
                c, open_tasks=c.open_tasks + delta, recent_tasks=c.recent_tasks + delta
            )

    def moved(self, before: str | None, after: str | None) -> None:
        """A task open with ``before`` is now open with ``after`` (either may be None)."""
        if before == after:
            return
        self.holds(before, -1)
        self.holds(after, 1)

    def worked(self, volunteer_id: str | None, hours: float) -> None:
        """``volunteer_id`` completed a task or visit with ``hours`` (recent work)."""
        c = self.by_id.get(volunteer_id or "")
        if c is not None:
            self.by_id[c.id] = replace(
                c, recent_tasks=c.recent_tasks + 1, recent_hours=c.recent_hours + hours
            )
