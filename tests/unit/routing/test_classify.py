"""Classification: each SPEC default, in order, explainable."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.routing.domain.classify import ClassifyInput, classify
from services.routing.domain.policy import Policy
from tongxin.contracts.enums import Category, Skill, Tier, Urgency
from tongxin.runtime.settings import REPO_ROOT

POLICY_FILE = REPO_ROOT / "deploy" / "policy" / "routing.json"

POLICY = Policy.load(POLICY_FILE)


def inp(category: Category, **kw: object) -> ClassifyInput:
    base: dict[str, object] = {
        "urgency": Urgency.NORMAL,
        "vulnerable": False,
        "community": "community:liyuan",
        "compound": "compound:jinyuan",
    }
    base.update(kw)
    return ClassifyInput(category=category, **base)  # type: ignore[arg-type]


def test_emergency_is_major_with_the_town_coordinating() -> None:
    d = classify(inp(Category.SANITATION, urgency=Urgency.EMERGENCY), POLICY)
    assert d.tier == Tier.MAJOR
    assert d.rule == "emergency-or-hazard"
    assert d.units == ["dept:housing", "town:yongbei"]
    assert d.inputs == {"urgency": "emergency", "category": "sanitation", "vulnerable": False}


def test_safety_hazard_is_major_even_when_not_urgent() -> None:
    d = classify(inp(Category.SAFETY_HAZARD), POLICY)
    assert (d.tier, d.rule) == (Tier.MAJOR, "emergency-or-hazard")


def test_emergency_of_a_vulnerable_resident_is_special_with_a_social_worker() -> None:
    d = classify(inp(Category.SAFETY_HAZARD, vulnerable=True), POLICY)
    assert (d.tier, d.rule) == (Tier.SPECIAL, "emergency-vulnerable")
    assert d.units == ["station:liyuan:social-work"]


def test_vulnerable_resident_is_special() -> None:
    d = classify(inp(Category.LEGAL_AID, vulnerable=True), POLICY)
    assert (d.tier, d.rule) == (Tier.SPECIAL, "vulnerable-resident")
    assert d.inputs == {"vulnerable": True}
    assert d.skills == [Skill.LEGAL] and d.needs_volunteers


@pytest.mark.parametrize(
    "category", [Category.PROPERTY_SERVICE, Category.PUBLIC_FACILITIES, Category.SANITATION]
)
def test_everyday_items_are_routine_for_the_property_centre(category: Category) -> None:
    d = classify(inp(category), POLICY)
    assert (d.tier, d.rule) == (Tier.ROUTINE, "everyday-item")
    assert d.units == ["station:liyuan:property", "community:liyuan"]


def test_public_affairs_go_to_deliberation() -> None:
    d = classify(inp(Category.PUBLIC_AFFAIRS), POLICY)
    assert (d.tier, d.rule, d.deliberation) == (Tier.GENERAL, "public-affairs", True)
    assert d.units == ["community:liyuan"]


def test_department_category_is_general_with_the_department_supporting() -> None:
    d = classify(inp(Category.EMPLOYMENT, open_similar=1), POLICY)
    assert (d.tier, d.rule) == (Tier.GENERAL, "department-general")
    assert d.units == ["community:liyuan", "dept:hr-social-security"]
    assert d.inputs["open_similar"] == 1


def test_department_category_repeated_three_times_in_a_compound_is_major() -> None:
    d = classify(inp(Category.EMPLOYMENT, open_similar=2), POLICY)
    assert (d.tier, d.rule) == (Tier.MAJOR, "department-escalated")
    assert d.units == ["dept:hr-social-security", "town:yongbei"]
    assert "反复" in d.reason


def test_cross_department_is_major() -> None:
    d = classify(inp(Category.AGRICULTURE, cross_department=True), POLICY)
    assert (d.tier, d.rule) == (Tier.MAJOR, "department-escalated")
    assert "跨部门" in d.reason


def test_anything_else_is_general_for_the_community() -> None:
    d = classify(inp(Category.SUGGESTION), POLICY)
    assert (d.tier, d.rule, d.units) == (Tier.GENERAL, "default-general", ["community:liyuan"])


def test_rule_order_comes_from_the_policy() -> None:
    # with the vulnerable rule first, a vulnerable resident's hazard is not "emergency"
    reordered = replace(
        POLICY,
        rules=(
            "vulnerable-resident",
            "emergency-or-hazard",
            "everyday-item",
            "public-affairs",
            "department",
            "default-general",
        ),
    )
    d = classify(inp(Category.SAFETY_HAZARD, vulnerable=True), reordered)
    assert d.rule == "vulnerable-resident"
