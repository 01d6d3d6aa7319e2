"""The service catalogue (SPEC §1): each category's typed extra attributes, Open311-style.

An attribute is described like an Open311 GeoReport v2 ``attribute`` (``code``,
``datatype``, ``required``, ``values``) so the same table drives validation of JSON
submissions, the inbound topic, Open311 form posts and ``services/{code}.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tongxin.contracts.enums import CATEGORY_NAMES_ZH, Category


class Datatype(StrEnum):
    """Open311 attribute datatypes."""

    STRING = "string"
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"  # an Open311 extension; form values "true"/"false"
    SINGLE = "singlevaluelist"
    MULTI = "multivaluelist"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One typed extra attribute of a category."""

    code: str
    datatype: Datatype
    description: str
    required: bool = False
    values: Mapping[str, str] = field(default_factory=dict)  # key -> 中文 name
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    max_length: int = 200


def _choice(code: str, description: str, values: dict[str, str], **kw: Any) -> Attribute:
    return Attribute(code, Datatype.SINGLE, description, values=values, **kw)


_OTHER = {"other": "其他"}

# Attributes every category accepts.
COMMON: tuple[Attribute, ...] = (
    Attribute(
        "cross_department",
        Datatype.BOOLEAN,
        "需要多个部门协同（跨部门）",
    ),
    Attribute("building", Datatype.STRING, "楼栋/单元", max_length=40),
)

ATTRIBUTES: dict[Category, tuple[Attribute, ...]] = {
    Category.PROPERTY_SERVICE: (
        _choice(
            "issue",
            "物业问题类型",
            {
                "elevator": "电梯",
                "water_leak": "漏水",
                "security": "安保门禁",
                "parking": "停车",
                "fees": "物业费",
                **_OTHER,
            },
        ),
    ),
    Category.PUBLIC_FACILITIES: (
        _choice(
            "facility",
            "设施类型",
            {
                "street_light": "路灯",
                "road": "道路",
                "drainage": "排水",
                "fitness_equipment": "健身器材",
                "playground": "儿童游乐设施",
                **_OTHER,
            },
        ),
    ),
    Category.SANITATION: (
        _choice(
            "issue",
            "卫生问题类型",
            {"garbage": "垃圾", "sewage": "污水", "pests": "病媒生物", "odour": "异味", **_OTHER},
        ),
    ),
    Category.NEIGHBOUR_DISPUTE: (
        _choice(
            "dispute_type",
            "纠纷类型",
            {
                "noise": "噪音",
                "boundary": "边界",
                "water_leak": "漏水",
                "pets": "宠物",
                "parking": "停车",
                "family": "家庭",
                **_OTHER,
            },
        ),
        Attribute(
            "parties_count", Datatype.NUMBER, "当事方数量", minimum=2, maximum=50, integer=True
        ),
    ),
    Category.EMPLOYMENT: (
        _choice(
            "seeking",
            "需要的帮扶",
            {"job": "求职", "training": "技能培训", "entrepreneurship": "创业扶持"},
        ),
        Attribute("age", Datatype.NUMBER, "年龄", minimum=16, maximum=80, integer=True),
    ),
    Category.EDUCATION: (
        _choice(
            "issue",
            "教育事项",
            {"dropout_risk": "辍学风险", "enrolment": "入学", "transfer": "转学", **_OTHER},
        ),
        Attribute("student_age", Datatype.NUMBER, "学生年龄", minimum=3, maximum=22, integer=True),
    ),
    Category.ELDERLY_CARE: (
        Attribute("age", Datatype.NUMBER, "老人年龄", minimum=50, maximum=120, integer=True),
        Attribute("lives_alone", Datatype.BOOLEAN, "是否独居"),
        Attribute(
            "needs",
            Datatype.MULTI,
            "需要的服务",
            values={
                "meals": "助餐",
                "cleaning": "保洁",
                "medical": "就医",
                "companionship": "陪伴",
                "shopping": "代购",
            },
        ),
    ),
    Category.SOCIAL_ASSISTANCE: (
        _choice(
            "assistance",
            "救助类型",
            {
                "subsistence": "低保",
                "medical": "医疗救助",
                "temporary": "临时救助",
                "housing": "住房",
                **_OTHER,
            },
        ),
        Attribute(
            "household_size", Datatype.NUMBER, "家庭人口", minimum=1, maximum=20, integer=True
        ),
    ),
    Category.LEGAL_AID: (
        _choice(
            "matter",
            "法律事项",
            {
                "wage_arrears": "欠薪",
                "family": "婚姻家庭",
                "contract": "合同",
                "injury": "工伤/人身损害",
                **_OTHER,
            },
        ),
    ),
    Category.SAFETY_HAZARD: (
        _choice(
            "hazard",
            "隐患类型",
            {
                "fire": "消防",
                "gas": "燃气",
                "electrical": "用电",
                "structural": "房屋结构",
                "traffic": "交通",
                "geological": "地质灾害",
                **_OTHER,
            },
        ),
        Attribute("people_at_risk", Datatype.BOOLEAN, "是否危及人身安全"),
    ),
    Category.RELOCATION_SUPPORT: (
        Attribute("resettlement_site", Datatype.STRING, "安置点", max_length=60),
        _choice(
            "need",
            "后续扶持需求",
            {
                "employment": "就业",
                "housing": "住房",
                "schooling": "就学",
                "medical": "就医",
                **_OTHER,
            },
        ),
    ),
    Category.AGRICULTURE: (
        Attribute("crop", Datatype.STRING, "作物/养殖品种", max_length=40),
        _choice(
            "issue",
            "生产问题",
            {
                "pests": "病虫害",
                "irrigation": "灌溉",
                "seeds": "种苗",
                "market": "销售",
                "machinery": "农机",
                **_OTHER,
            },
        ),
    ),
    Category.YOUTH_FAMILY: (
        Attribute("child_age", Datatype.NUMBER, "孩子年龄", minimum=0, maximum=18, integer=True),
        _choice(
            "issue",
            "事项",
            {
                "left_behind": "留守儿童",
                "tutoring": "课后辅导",
                "family_conflict": "家庭矛盾",
                "mental_health": "心理健康",
                **_OTHER,
            },
        ),
    ),
    Category.PUBLIC_AFFAIRS: (
        _choice(
            "topic",
            "议题",
            {
                "parking": "停车",
                "renovation": "改造",
                "fees": "收费",
                "greening": "绿化",
                "rules": "管理规约",
                **_OTHER,
            },
        ),
        Attribute(
            "households_affected",
            Datatype.NUMBER,
            "涉及户数",
            minimum=1,
            maximum=100000,
            integer=True,
        ),
    ),
    Category.SUGGESTION: (),
}

MAX_ATTRIBUTES = 20


def attributes_of(category: Category) -> tuple[Attribute, ...]:
    """Every attribute the category accepts (its own first, then the common ones)."""
    return (*ATTRIBUTES[category], *COMMON)


def _err(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(attr: Attribute, value: Any) -> tuple[Any, str | None]:
    """(normalised value, error message or None). Lax like a form: "3" is a number."""
    dt = attr.datatype
    if dt in (Datatype.STRING, Datatype.TEXT):
        if not isinstance(value, str):
            return None, "must be a string"
        v = value.strip()
        limit = attr.max_length if dt is Datatype.STRING else max(attr.max_length, 1000)
        if not v:
            return None, "must not be empty"
        if len(v) > limit:
            return None, f"at most {limit} characters"
        return v, None
    if dt is Datatype.BOOLEAN:
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, "must be true or false"
    if dt is Datatype.NUMBER:
        num: float
        if isinstance(value, bool):
            return None, "must be a number"
        if isinstance(value, int | float):
            num = float(value)
        elif isinstance(value, str):
            try:
                num = float(value.strip())
            except ValueError:
                return None, "must be a number"
        else:
            return None, "must be a number"
        if not math.isfinite(num):
            return None, "must be a finite number"
        if attr.integer and not num.is_integer():
            return None, "must be a whole number"
        if attr.minimum is not None and num < attr.minimum:
            return None, f"must be at least {attr.minimum:g}"
        if attr.maximum is not None and num > attr.maximum:
            return None, f"must be at most {attr.maximum:g}"
        return (int(num) if attr.integer else num), None
    if dt is Datatype.SINGLE:
        if not isinstance(value, str) or value not in attr.values:
            return None, f"must be one of {sorted(attr.values)}"
        return value, None
    # multivaluelist: a list of keys, or one comma-separated string (forms)
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        return None, "must be a non-empty list"
    out: list[str] = []
    for item in items:
        key = item.strip() if isinstance(item, str) else item
        if not isinstance(key, str) or key not in attr.values:
            return None, f"every value must be one of {sorted(attr.values)}"
        if key not in out:
            out.append(key)
    return out, None


def validate_attributes(
    category: Category, raw: Mapping[str, Any], loc: tuple[str, ...] = ("body", "attributes")
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check a category's extra attributes: (normalised attributes, field errors)."""
    known = {a.code: a for a in attributes_of(category)}
    out: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    if len(raw) > MAX_ATTRIBUTES:
        errors.append(_err([*loc], f"at most {MAX_ATTRIBUTES} attributes", "too_many"))
        return out, errors
    for code, value in raw.items():
        attr = known.get(code)
        if attr is None:
            errors.append(
                _err(
                    [*loc, code],
                    f"unknown attribute for {category.value}; one of {sorted(known)}",
                    "unknown_attribute",
                )
            )
            continue
        if value is None and not attr.required:
            continue
        norm, problem = _coerce(attr, value)
        if problem:
            errors.append(_err([*loc, code], problem, f"attribute_{attr.datatype.value}"))
        else:
            out[code] = norm
    reported = {e["loc"][-1] for e in errors}
    for attr in known.values():
        if attr.required and attr.code not in out and attr.code not in reported:
            errors.append(_err([*loc, attr.code], "required", "missing"))
    return out, errors


def catalogue(departments: Mapping[Category, str]) -> list[dict[str, Any]]:
    """``GET /v1/categories``: every category with its attributes, and the name of the
    alliance department it goes to (``departments``: from the routing policy, the one
    place that decides it; None for the community's own items)."""
    return [
        {
            "code": c.value,
            "name": CATEGORY_NAMES_ZH[c],
            "department": departments.get(c),
            "attributes": [attribute_view(a, i) for i, a in enumerate(attributes_of(c), 1)],
        }
        for c in Category
    ]


def attribute_view(a: Attribute, order: int) -> dict[str, Any]:
    """An attribute as Open311 describes one."""
    view: dict[str, Any] = {
        "variable": True,
        "code": a.code,
        "datatype": a.datatype.value,
        "required": a.required,
        "datatype_description": _datatype_description(a),
        "order": order,
        "description": a.description,
    }
    if a.values:
        view["values"] = [{"key": k, "name": v} for k, v in a.values.items()]
    return view


def _datatype_description(a: Attribute) -> str | None:
    if a.datatype is Datatype.NUMBER:
        lo = "" if a.minimum is None else f"{a.minimum:g}"
        hi = "" if a.maximum is None else f"{a.maximum:g}"
        kind = "whole number" if a.integer else "number"
        return f"{kind} {lo}..{hi}".strip()
    if a.datatype in (Datatype.STRING, Datatype.TEXT):
        return f"up to {a.max_length} characters"
    if a.datatype is Datatype.BOOLEAN:
        return "true or false"
    return None
