"""Rule-based, ordered, explainable classification of a request into a tier (SPEC §1).

The first rule that matches decides; the decision names the rule and the inputs it used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.routing.domain.policy import Policy, PolicyError
from tongxin.contracts.enums import Category, Skill, Tier, Urgency


@dataclass(frozen=True, slots=True)
class ClassifyInput:
    """What classification looks at."""

    category: Category
    urgency: Urgency
    vulnerable: bool
    community: str
    compound: str | None = None
    cross_department: bool = False
    open_similar: int = 0  # open cases for the same compound + category, this one excluded


@dataclass(frozen=True, slots=True)
class Decision:
    """The tier, the units that handle it, and why."""

    tier: Tier
    rule: str
    reason: str
    units: list[str]
    inputs: dict[str, Any]
    needs_volunteers: bool = False
    skills: list[Skill] = field(default_factory=list)
    deliberation: bool = False


def community_unit(inp: ClassifyInput) -> str:
    """The community itself as a handling unit."""
    return inp.community


def social_worker_unit(inp: ClassifyInput) -> str:
    """The community's social-work station 社工站."""
    return f"station:{inp.community.removeprefix('community:')}:social-work"


def property_unit(inp: ClassifyInput) -> str:
    """The community's property service centre 物业服务中心."""
    return f"station:{inp.community.removeprefix('community:')}:property"


Rule = Callable[[ClassifyInput, Policy], Decision | None]


def _decision(
    inp: ClassifyInput,
    policy: Policy,
    tier: Tier,
    rule: str,
    reason: str,
    units: list[str],
    used: tuple[str, ...],
    deliberation: bool = False,
) -> Decision:
    skill = policy.volunteer_skill.get(inp.category)
    return Decision(
        tier=tier,
        rule=rule,
        reason=reason,
        units=units,
        inputs={k: _plain(getattr(inp, k)) for k in used},
        needs_volunteers=skill is not None,
        skills=[skill] if skill else [],
        deliberation=deliberation,
    )


def _plain(v: Any) -> Any:
    return v.value if isinstance(v, (Category, Urgency)) else v


def rule_emergency(inp: ClassifyInput, policy: Policy) -> Decision | None:
    """Emergencies and safety hazards: whistle, or a social worker for the vulnerable."""
    if inp.urgency != Urgency.EMERGENCY and inp.category != Category.SAFETY_HAZARD:
        return None
    used = ("urgency", "category", "vulnerable")
    if inp.vulnerable:
        return _decision(
            inp,
            policy,
            Tier.SPECIAL,
            "emergency-vulnerable",
            "紧急或安全隐患，且诉求人为特殊关爱对象：社工专人专办",
            [social_worker_unit(inp)],
            used,
        )
    dept = policy.department_of.get(inp.category, policy.department_of[Category.SAFETY_HAZARD])
    return _decision(
        inp,
        policy,
        Tier.MAJOR,
        "emergency-or-hazard",
        "紧急事项或安全隐患：吹哨报到，镇党委统筹",
        [dept, policy.town_unit],
        used,
    )


def rule_vulnerable(inp: ClassifyInput, policy: Policy) -> Decision | None:
    """A registered or flagged vulnerable resident: a named social worker owns it."""
    if not inp.vulnerable:
        return None
    return _decision(
        inp,
        policy,
        Tier.SPECIAL,
        "vulnerable-resident",
        "特殊关爱对象的诉求：社工灵活专办",
        [social_worker_unit(inp)],
        ("vulnerable",),
    )


def rule_routine(inp: ClassifyInput, policy: Policy) -> Decision | None:
    """Everyday property, facility and sanitation items: handled on the spot."""
    if inp.category not in policy.routine_categories:
        return None
    return _decision(
        inp,
        policy,
        Tier.ROUTINE,
        "everyday-item",
        "物业、设施、环境卫生等日常事项：即知即办",
        [property_unit(inp), community_unit(inp)],
        ("category",),
    )


def rule_public_affairs(inp: ClassifyInput, policy: Policy) -> Decision | None:
    """Public affairs of a compound: the next joint meeting discusses them."""
    if inp.category != Category.PUBLIC_AFFAIRS:
        return None
    return _decision(
        inp,
        policy,
        Tier.GENERAL,
        "public-affairs",
        "小区公共事务：提交联席会议大家一起议",
        [community_unit(inp)],
        ("category",),
        deliberation=True,
    )


def rule_department(inp: ClassifyInput, policy: Policy) -> Decision | None:
    """Department categories: whistle when cross-department or repeated, else general."""
    dept = policy.department_of.get(inp.category)
    if dept is None:
        return None
    used = ("category", "cross_department", "open_similar", "compound")
    if inp.cross_department or inp.open_similar + 1 >= policy.repeat_threshold:
        why = "跨部门事项" if inp.cross_department else "同一小区同类诉求反复出现"
        return _decision(
            inp,
            policy,
            Tier.MAJOR,
            "department-escalated",
            f"{why}：吹哨报到",
            [dept, policy.town_unit],
            used,
        )
    return _decision(
        inp,
        policy,
        Tier.GENERAL,
        "department-general",
        "需部门支持的一般事项：社区定期速办，部门协办",
        [community_unit(inp), dept],
        used,
    )


def rule_default(inp: ClassifyInput, policy: Policy) -> Decision | None:
    """Anything else: the community handles it on a fast schedule."""
    return _decision(
        inp,
        policy,
        Tier.GENERAL,
        "default-general",
        "一般事项：社区定期速办",
        [community_unit(inp)],
        ("category",),
    )


RULES_BY_NAME: dict[str, Rule] = {
    "emergency-or-hazard": rule_emergency,
    "vulnerable-resident": rule_vulnerable,
    "everyday-item": rule_routine,
    "public-affairs": rule_public_affairs,
    "department": rule_department,
    "default-general": rule_default,
}

RULES: tuple[Rule, ...] = tuple(RULES_BY_NAME.values())


def checked(policy: Policy) -> Policy:
    """``policy``, if every rule it names is one of :data:`RULES_BY_NAME`
    (:class:`PolicyError` otherwise: raised at start-up, not at the first case)."""
    unknown = [r for r in policy.rules if r not in RULES_BY_NAME]
    if unknown:
        raise PolicyError(f"unknown classification rules: {unknown}")
    return policy


def classify(inp: ClassifyInput, policy: Policy, rules: tuple[Rule, ...] | None = None) -> Decision:
    """The decision of the first rule that matches, in the policy's order."""
    chosen = rules if rules is not None else tuple(RULES_BY_NAME[r] for r in policy.rules)
    for rule in chosen:
        decision = rule(inp, policy)
        if decision is not None:
            return decision
    raise LookupError("no rule matched; the rule list must end with a default")
