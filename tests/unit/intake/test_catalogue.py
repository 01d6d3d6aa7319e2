"""Per-category typed attributes (no I/O)."""

from __future__ import annotations

import pytest

from services.intake.domain.catalogue import ATTRIBUTES, catalogue, validate_attributes
from tongxin.contracts.enums import Category


def test_every_category_is_in_the_catalogue() -> None:
    assert set(ATTRIBUTES) == set(Category)
    assert [c["code"] for c in catalogue({})] == [c.value for c in Category]


def test_valid_attributes_are_normalised() -> None:
    attrs, errors = validate_attributes(
        Category.ELDERLY_CARE,
        {"age": "82", "lives_alone": "true", "needs": "meals, medical,meals"},
    )
    assert errors == []
    assert attrs == {"age": 82, "lives_alone": True, "needs": ["meals", "medical"]}


def test_common_attributes_are_accepted_everywhere() -> None:
    for category in Category:
        attrs, errors = validate_attributes(category, {"cross_department": True})
        assert errors == [] and attrs == {"cross_department": True}


@pytest.mark.parametrize(
    ("category", "raw", "code", "kind"),
    [
        (Category.ELDERLY_CARE, {"age": 12}, "age", "attribute_number"),
        (Category.ELDERLY_CARE, {"age": 80.5}, "age", "attribute_number"),
        (Category.ELDERLY_CARE, {"age": "old"}, "age", "attribute_number"),
        (Category.ELDERLY_CARE, {"age": True}, "age", "attribute_number"),
        (Category.ELDERLY_CARE, {"age": float("nan")}, "age", "attribute_number"),
        (
            Category.ELDERLY_CARE,
            {"needs": ["meals", "flying"]},
            "needs",
            "attribute_multivaluelist",
        ),
        (Category.ELDERLY_CARE, {"needs": []}, "needs", "attribute_multivaluelist"),
        (Category.SAFETY_HAZARD, {"hazard": "ghosts"}, "hazard", "attribute_singlevaluelist"),
        (
            Category.SAFETY_HAZARD,
            {"people_at_risk": "maybe"},
            "people_at_risk",
            "attribute_boolean",
        ),
        (Category.AGRICULTURE, {"crop": "x" * 41}, "crop", "attribute_string"),
        (Category.AGRICULTURE, {"crop": 7}, "crop", "attribute_string"),
        (Category.SUGGESTION, {"hazard": "fire"}, "hazard", "unknown_attribute"),
    ],
)
def test_invalid_attributes_are_reported_per_field(
    category: Category, raw: dict[str, object], code: str, kind: str
) -> None:
    attrs, errors = validate_attributes(category, raw)
    assert attrs == {}
    assert errors == [{"loc": ["body", "attributes", code], "msg": errors[0]["msg"], "type": kind}]
    assert errors[0]["msg"]


def test_too_many_attributes() -> None:
    _attrs, errors = validate_attributes(Category.SUGGESTION, {f"a{i}": 1 for i in range(21)})
    assert errors[0]["type"] == "too_many"
