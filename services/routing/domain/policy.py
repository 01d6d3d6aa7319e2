"""The routing policy: tier deadlines, rules, departments, escalation, meetings (SPEC §1).

The policy file (``deploy/policy/routing.json``, or ``TONGXIN_ROUTING_POLICY_FILE``) is
the one place of these facts: intake's catalogue shows the same departments from it.
:func:`Policy.from_dict` reads the file's shape. Durations are real time;
:meth:`Policy.scaled` multiplies them by ``TONGXIN_DEADLINE_SCALE`` so tests and demos
run in seconds (the meeting calendar is not scaled: it is a date, not a duration).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from tongxin.contracts.enums import Category, Skill, Tier


class PolicyError(ValueError):
    """The policy file is not valid."""


@dataclass(frozen=True, slots=True)
class TierDeadlines:
    """How long a unit has to acknowledge (report in) and to resolve."""

    acknowledge: timedelta
    resolve: timedelta


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    """One level of the escalation chain; levels above the first name their unit."""

    level: str
    unit: str | None = None
    acknowledge: timedelta = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class MeetingSchedule:
    """When the joint meeting 联席会议 sits: monthly on ``day`` or weekly on ``weekday``."""

    cadence: str = "monthly"  # "monthly" | "weekly"
    day: int = 25  # day of month (monthly, clipped to the month's length) or weekday 0=Mon
    hour: int = 15
    minute: int = 0
    utc_offset_minutes: int = 8 * 60


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything classification, deadlines, escalation and meetings depend on — read from
    the policy file (``deploy/policy/routing.json``), the one place these facts live."""

    deadlines: dict[Tier, TierDeadlines]
    department_of: dict[Category, str]
    routine_categories: frozenset[Category]
    volunteer_skill: dict[Category, Skill]
    repeat_threshold: int
    rules: tuple[str, ...]
    escalation: tuple[EscalationLevel, ...]
    feedback_window: timedelta
    meeting: MeetingSchedule
    scale: float = 1.0

    @property
    def town_unit(self) -> str:
        """The coordinator: the unit of the second escalation level (the town committee)."""
        unit = self.escalation[1].unit
        assert unit is not None  # validate() refuses a chain without it
        return unit

    def level_index(self, level: str) -> int:
        """Position of a level name in the chain (unknown names count as the first)."""
        for i, lv in enumerate(self.escalation):
            if lv.level == level:
                return i
        return 0

    def scaled(self, factor: float) -> Policy:
        """The same policy with every duration multiplied by ``factor``."""
        return replace(
            self,
            deadlines={
                t: TierDeadlines(d.acknowledge * factor, d.resolve * factor)
                for t, d in self.deadlines.items()
            },
            escalation=tuple(
                replace(lv, acknowledge=lv.acknowledge * factor) for lv in self.escalation
            ),
            feedback_window=self.feedback_window * factor,
            scale=self.scale * factor,
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Policy:
        """Read the policy file's shape (every key is required: no fact lives elsewhere)."""
        try:
            deadlines = {
                Tier(name): TierDeadlines(
                    parse_duration(spec["acknowledge"]), parse_duration(spec["resolve"])
                )
                for name, spec in dict(raw["tiers"]).items()
            }
            escalation = tuple(
                EscalationLevel(
                    str(lv["level"]), lv.get("unit"), parse_duration(lv.get("acknowledge", "2h"))
                )
                for lv in raw["escalation"]
            )
            m = dict(raw["meeting"])
            meeting = MeetingSchedule(
                cadence=str(m["cadence"]),
                day=int(m["day"]),
                hour=int(m["hour"]),
                minute=int(m.get("minute", 0)),
                utc_offset_minutes=parse_utc_offset(str(m["utc_offset"])),
            )
            policy = cls(
                deadlines=deadlines,
                department_of={Category(k): str(v) for k, v in raw["department_of"].items()},
                routine_categories=frozenset(Category(c) for c in raw["routine_categories"]),
                volunteer_skill={Category(k): Skill(v) for k, v in raw["volunteer_skill"].items()},
                repeat_threshold=int(raw["repeat_threshold"]),
                rules=tuple(str(r) for r in raw["rules"]),
                escalation=escalation,
                feedback_window=parse_duration(raw["feedback_window"]),
                meeting=meeting,
            )
        except KeyError as exc:
            raise PolicyError(f"invalid routing policy: {exc} is missing") from exc
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"invalid routing policy: {exc}") from exc
        policy.validate()
        return policy

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read and check a policy file."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PolicyError(f"cannot read the routing policy {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise PolicyError(f"{path} must hold a JSON object")
        return cls.from_dict(raw)

    def validate(self) -> None:
        """Refuse a policy that cannot work (raised at start-up, not at the first case).
        Whether each named rule exists is classify's to say (``classify.checked``)."""
        if not self.rules or self.rules[-1] != "default-general":
            raise PolicyError("the rule list must end with 'default-general'")
        if len(self.escalation) < 2 or any(lv.unit is None for lv in self.escalation[1:]):
            raise PolicyError(
                "the escalation chain needs at least two levels, each above the first with a unit"
            )
        if set(self.deadlines) != set(Tier):
            raise PolicyError("every tier needs deadlines")
        if self.meeting.cadence not in ("monthly", "weekly"):
            raise PolicyError("meeting cadence must be 'monthly' or 'weekly'")
        if self.repeat_threshold < 1:
            raise PolicyError("repeat_threshold must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """The policy in force, for ``GET /v1/policy`` (durations in scaled seconds)."""
        m = self.meeting
        return {
            "deadline_scale": self.scale,
            "tiers": {
                t.value: {
                    "acknowledge_s": d.acknowledge.total_seconds(),
                    "resolve_s": d.resolve.total_seconds(),
                }
                for t, d in self.deadlines.items()
            },
            "rules": list(self.rules),
            "department_of": {c.value: u for c, u in self.department_of.items()},
            "routine_categories": sorted(c.value for c in self.routine_categories),
            "volunteer_skill": {c.value: s.value for c, s in self.volunteer_skill.items()},
            "repeat_threshold": self.repeat_threshold,
            "escalation": [
                {
                    "level": lv.level,
                    "unit": lv.unit,
                    "acknowledge_s": lv.acknowledge.total_seconds(),
                }
                for lv in self.escalation
            ],
            "feedback_window_s": self.feedback_window.total_seconds(),
            "meeting": {
                "cadence": m.cadence,
                "day": m.day,
                "hour": m.hour,
                "minute": m.minute,
                "utc_offset_minutes": m.utc_offset_minutes,
            },
        }


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """``"30m"``, ``"2h"``, ``"7d"``, ``"45s"`` or a number of seconds → timedelta."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {value!r}")
    return timedelta(seconds=seconds)


def parse_utc_offset(value: str) -> int:
    """``"+08:00"`` → 480 minutes."""
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", value.strip())
    if not match:
        raise ValueError(f"not a UTC offset: {value!r}")
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    return minutes if match.group(1) == "+" else -minutes
