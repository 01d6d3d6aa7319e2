"""The routing policy: tier deadlines, responsible departments, volunteer skills (SPEC §1).

Durations are real time; :meth:`Policy.scaled` multiplies them by
``TONGXIN_DEADLINE_SCALE`` so tests and demos run in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from tongxin.contracts.enums import Category, Skill, Tier


@dataclass(frozen=True, slots=True)
class TierDeadlines:
    """How long a unit has to acknowledge (report in) and to resolve."""

    acknowledge: timedelta
    resolve: timedelta


DEFAULT_DEADLINES: dict[Tier, TierDeadlines] = {
    Tier.ROUTINE: TierDeadlines(timedelta(hours=1), timedelta(hours=24)),
    Tier.GENERAL: TierDeadlines(timedelta(hours=24), timedelta(days=7)),
    Tier.MAJOR: TierDeadlines(timedelta(hours=2), timedelta(days=15)),
    Tier.SPECIAL: TierDeadlines(timedelta(minutes=30), timedelta(hours=72)),
}

# Categories that need an alliance department, and which one.
DEPARTMENT_OF: dict[Category, str] = {
    Category.EMPLOYMENT: "dept:hr-social-security",
    Category.EDUCATION: "dept:education-sports",
    Category.ELDERLY_CARE: "dept:civil-affairs",
    Category.SOCIAL_ASSISTANCE: "dept:civil-affairs",
    Category.LEGAL_AID: "dept:justice",
    Category.RELOCATION_SUPPORT: "dept:rural-revitalization",
    Category.AGRICULTURE: "dept:agriculture",
    Category.YOUTH_FAMILY: "dept:youth-league",
    Category.SAFETY_HAZARD: "dept:housing",
}

# Everyday items the community (or its property centre) handles on the spot.
ROUTINE_CATEGORIES: frozenset[Category] = frozenset(
    {Category.PROPERTY_SERVICE, Category.PUBLIC_FACILITIES, Category.SANITATION}
)

# Categories where red-vest volunteers help, with the skill they need.
VOLUNTEER_SKILL: dict[Category, Skill] = {
    Category.ELDERLY_CARE: Skill.ELDER_CARE,
    Category.LEGAL_AID: Skill.LEGAL,
    Category.EMPLOYMENT: Skill.EMPLOYMENT,
    Category.SOCIAL_ASSISTANCE: Skill.CHARITY,
    Category.EDUCATION: Skill.TUTORING,
    Category.YOUTH_FAMILY: Skill.TUTORING,
    Category.PUBLIC_FACILITIES: Skill.CONVENIENCE,
}


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything classification and deadlines depend on."""

    deadlines: dict[Tier, TierDeadlines] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    department_of: dict[Category, str] = field(default_factory=lambda: dict(DEPARTMENT_OF))
    routine_categories: frozenset[Category] = ROUTINE_CATEGORIES
    volunteer_skill: dict[Category, Skill] = field(default_factory=lambda: dict(VOLUNTEER_SKILL))
    repeat_threshold: int = 3
    town_unit: str = "town:yongbei"

    def scaled(self, factor: float) -> Policy:
        """The same policy with every duration multiplied by ``factor``."""
        return replace(
            self,
            deadlines={
                t: TierDeadlines(d.acknowledge * factor, d.resolve * factor)
                for t, d in self.deadlines.items()
            },
        )
