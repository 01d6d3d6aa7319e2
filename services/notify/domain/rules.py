"""Which event notifies whom: rules from ``deploy/notify/rules.yaml``, resolved to recipients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notify.domain.directory import Directory

# Audience selectors a rule may name; any other entry containing ":" is a literal id.
SELECTORS: dict[str, str] = {
    "submitter": "the resident who raised the request (contact from request.submitted)",
    "units": "the handling units of the event (units, else unit, else the case's units)",
    "case_units": "the case's handling units as routed",
    "liaisons": "the liaisons of the department units among the handling units",
    "unit": "the unit that acted (the event's unit)",
    "to_unit": "where an escalation went",
    "town": "the town party committee (coordinator)",
    "county": "the county (county:yongsheng)",
    "community": "the community of the request or care recipient",
    "social_work": "the social-work station of that community",
    "volunteer": "the volunteer the task is about",
    "volunteers": "the volunteers of a care recipient (care.visit_overdue)",
    "staff": "the platform's duty staff (their default webhook receives every staff message)",
}


class Rule(BaseModel):
    """One rule: an event type, optional conditions on its fields, whom to tell and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    to: list[str] = Field(min_length=1)
    template: str = Field(min_length=1)
    when: dict[str, Any] = Field(default_factory=dict)
    # critical messages (escalations, emergencies) bypass quiet hours
    critical: bool = False

    @field_validator("to")
    @classmethod
    def _known_selectors(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SELECTORS and ":" not in s]
        if bad:
            raise ValueError(f"unknown audience selectors {bad}; known: {sorted(SELECTORS)}")
        return v

    def matches(self, event_type: str, data: Mapping[str, Any]) -> bool:
        """Whether this rule applies to an event (``when`` values may be a list of choices)."""
        if event_type != self.event:
            return False
        for key, want in self.when.items():
            have = data.get(key)
            choices = want if isinstance(want, list) else [want]
            if have not in choices:
                return False
        return True


class RulesFile(BaseModel):
    """The shape of ``rules.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule]


class RuleSet:
    """The configured rules."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.rules: tuple[Rule, ...] = tuple(RulesFile.model_validate(doc).rules)

    def matching(self, event_type: str, data: Mapping[str, Any]) -> list[Rule]:
        """The rules that apply to an event, in file order."""
        return [r for r in self.rules if r.matches(event_type, data)]

    def event_types(self) -> set[str]:
        """Every event type some rule reacts to."""
        return {r.event for r in self.rules}


@dataclass(frozen=True, slots=True)
class Facts:
    """What notify knows when an event arrives: its data, the case and submitter it kept."""

    event_type: str
    data: Mapping[str, Any]
    case: Mapping[str, Any] | None = None
    contact: Mapping[str, Any] | None = None

    @property
    def request_id(self) -> str:
        return str(self.data.get("request_id", ""))


def _strs(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values if v]


def resolve(selector: str, facts: Facts, directory: Directory) -> list[str]:
    """The recipient ids an audience selector names for an event (possibly none)."""
    d, case = facts.data, facts.case or {}
    if ":" in selector:
        return [selector]
    if selector == "submitter":
        return [f"submitter:{facts.request_id}"] if facts.contact else []
    if selector == "units":
        if d.get("units"):
            return _strs(d["units"])
        if d.get("unit"):
            return [str(d["unit"])]
        return _strs(case.get("units", []))
    if selector == "case_units":
        return _strs(case.get("units", []) or d.get("units", []) or [d.get("unit")])
    if selector == "liaisons":
        units = resolve("units", facts, directory) + _strs(case.get("units", []))
        out = []
        for u in units:
            r = directory.get(u)
            if r is not None and r.liaison:
                out.append(r.liaison)
        return out
    if selector == "unit":
        return _strs([d.get("unit")])
    if selector == "to_unit":
        return _strs([d.get("to_unit")])
    if selector == "town":
        return [directory.town]
    if selector == "county":
        return [directory.county]
    if selector == "community":
        return _strs([d.get("community") or case.get("community")])
    if selector == "social_work":
        out = []
        for c in resolve("community", facts, directory):
            r = directory.get(c)
            if r is not None and r.social_work:
                out.append(r.social_work)
        return out
    if selector == "volunteer":
        return [f"volunteer:{d['volunteer_id']}"] if d.get("volunteer_id") else []
    if selector == "volunteers":
        return [f"volunteer:{v}" for v in _strs(d.get("volunteer_ids", []))]
    if selector == "staff":
        return list(directory.staff)
    raise ValueError(f"unknown audience selector {selector!r}")


def audience(rule: Rule, facts: Facts, directory: Directory) -> list[str]:
    """Every recipient id a rule names for an event, deduplicated, in order."""
    seen: dict[str, None] = {}
    for selector in rule.to:
        for rid in resolve(selector, facts, directory):
            seen.setdefault(rid, None)
    return list(seen)
