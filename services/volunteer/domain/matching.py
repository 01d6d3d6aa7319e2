"""Explainable volunteer matching: skill, proximity, load and fairness (SPEC §2.3).

Pure functions: the handler loads candidates and their recent work, this module ranks.
Ranking is deterministic for the same data (ties broken by volunteer id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tongxin.contracts.enums import Skill

WEIGHTS = {"proximity": 0.45, "load": 0.25, "fairness": 0.30}


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
    recent_tasks: int = 0  # last 30 days
    active: bool = True


@dataclass(frozen=True, slots=True)
class Need:
    """What a case needs from a volunteer."""

    skills: tuple[Skill, ...]
    community: str
    compound: str | None = None
    lat: float | None = None
    lng: float | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)  # declined this task already


@dataclass(frozen=True, slots=True)
class Ranked:
    """A candidate with the skill used and the score breakdown."""

    candidate: Candidate
    skill: Skill
    scores: dict[str, float]

    @property
    def total(self) -> float:
        """Weighted total."""
        return self.scores["total"]


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def proximity(c: Candidate, need: Need) -> float:
    """1 for the same compound, 0.7 for the same community, then decaying with distance."""
    if need.compound and c.compound == need.compound:
        return 1.0
    if c.community == need.community:
        return 0.7
    if None not in (c.lat, c.lng, need.lat, need.lng):
        km = haversine_km(c.lat, c.lng, need.lat, need.lng)  # type: ignore[arg-type]
        return round(0.6 / (1.0 + km), 4)
    return 0.0


def rank(candidates: list[Candidate], need: Need) -> list[Ranked]:
    """Eligible candidates, best first, each with its score breakdown."""
    out: list[Ranked] = []
    for c in candidates:
        if not c.active or c.id in need.exclude or c.open_tasks >= c.max_tasks:
            continue
        skill = next((s for s in need.skills if s in c.skills), None)
        if skill is None:
            continue
        prox = proximity(c, need)
        load = round(1.0 - c.open_tasks / max(1, c.max_tasks), 4)
        fair = round(1.0 / (1.0 + c.recent_tasks), 4)
        total = round(
            WEIGHTS["proximity"] * prox + WEIGHTS["load"] * load + WEIGHTS["fairness"] * fair, 4
        )
        out.append(
            Ranked(c, skill, {"proximity": prox, "load": load, "fairness": fair, "total": total})
        )
    out.sort(key=lambda r: (-r.total, r.candidate.id))
    return out
