"""Enumerations shared across topics and APIs (SPEC §1)."""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Tier(StrEnum):
    """Handling mode of a case."""

    ROUTINE = "routine"  # 常规事项 即知即办
    GENERAL = "general"  # 一般事项 定期速办
    MAJOR = "major"  # 重大事项 吹哨报到
    SPECIAL = "special"  # 特定事项 灵活专办


class Category(StrEnum):
    """Service catalogue (Open311-style service codes)."""

    PROPERTY_SERVICE = "property_service"
    PUBLIC_FACILITIES = "public_facilities"
    SANITATION = "sanitation"
    NEIGHBOUR_DISPUTE = "neighbour_dispute"
    EMPLOYMENT = "employment"
    EDUCATION = "education"
    ELDERLY_CARE = "elderly_care"
    SOCIAL_ASSISTANCE = "social_assistance"
    LEGAL_AID = "legal_aid"
    SAFETY_HAZARD = "safety_hazard"
    RELOCATION_SUPPORT = "relocation_support"
    AGRICULTURE = "agriculture"
    YOUTH_FAMILY = "youth_family"
    PUBLIC_AFFAIRS = "public_affairs"
    SUGGESTION = "suggestion"


CATEGORY_NAMES_ZH: dict[Category, str] = {
    Category.PROPERTY_SERVICE: "物业服务",
    Category.PUBLIC_FACILITIES: "公共设施",
    Category.SANITATION: "环境卫生",
    Category.NEIGHBOUR_DISPUTE: "矛盾纠纷",
    Category.EMPLOYMENT: "就业帮扶",
    Category.EDUCATION: "控辍保学/入学",
    Category.ELDERLY_CARE: "养老助老",
    Category.SOCIAL_ASSISTANCE: "困难救助",
    Category.LEGAL_AID: "法律援助",
    Category.SAFETY_HAZARD: "安全隐患",
    Category.RELOCATION_SUPPORT: "易地搬迁后续扶持",
    Category.AGRICULTURE: "农业生产",
    Category.YOUTH_FAMILY: "青少年与家庭",
    Category.PUBLIC_AFFAIRS: "小区公共事务",
    Category.SUGGESTION: "意见建议",
}

# The zh-CN names people read, one place for all: notify's templates use them, and the
# pages (console, resident, volunteer) get them as /static/labels.js (tongxin.runtime.pages).
TIER_NAMES_ZH: dict[Tier, str] = {
    Tier.ROUTINE: "常规事项",
    Tier.GENERAL: "一般事项",
    Tier.MAJOR: "重大事项",
    Tier.SPECIAL: "特定事项",
}
# how each tier is handled (党员群众提、大家一起议、社区接单办)
TIER_MODES_ZH: dict[Tier, str] = {
    Tier.ROUTINE: "即知即办",
    Tier.GENERAL: "定期速办",
    Tier.MAJOR: "吹哨报到",
    Tier.SPECIAL: "灵活专办",
}
# the escalation chain's levels (a case not taken in time goes up one)
LEVEL_NAMES_ZH: dict[str, str] = {"community": "社区", "town": "镇党委", "county": "县委县政府"}


class Channel(StrEnum):
    """How a request reached intake."""

    APP = "app"
    HOTLINE = "hotline"
    SUGGESTION_BOX = "suggestion_box"
    GRID_WORKER = "grid_worker"
    OWNERS_COMMITTEE = "owners_committee"
    VOLUNTEER = "volunteer"
    PLATFORM = "platform"


class Urgency(StrEnum):
    """How urgent the submitter says the need is."""

    NORMAL = "normal"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Skill(StrEnum):
    """Red-vest volunteer skills (squads form by skill)."""

    LEGAL = "legal"  # 法治类
    EMPLOYMENT = "employment"  # 就业类
    CONVENIENCE = "convenience"  # 便民类
    CHARITY = "charity"  # 慈善类
    TUTORING = "tutoring"  # 四点半课堂
    ELDER_CARE = "elder_care"  # 助老
    HEALTH = "health"  # 健康
    CULTURE_SPORTS = "culture_sports"  # 文体


class NotifyChannel(StrEnum):
    """Delivery channels of notify."""

    WEBHOOK = "webhook"
    WECOM = "wecom"  # 企业微信 group robot
    DINGTALK = "dingtalk"  # 钉钉 robot
    EMAIL = "email"
    SMS = "sms"
    CONSOLE = "console"


class Rating(StrEnum):
    """A resident's rating of a resolved request (回访)."""

    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    DISSATISFIED = "dissatisfied"


class CareType(StrEnum):
    """Kinds of registered vulnerable residents 特殊关爱对象."""

    ELDERLY_ALONE = "elderly_alone"
    DISABLED = "disabled"
    HARDSHIP = "hardship"
    LEFT_BEHIND_CHILD = "left_behind_child"


SKILL_NAMES_ZH: dict[Skill, str] = {
    Skill.LEGAL: "法治类",
    Skill.EMPLOYMENT: "就业类",
    Skill.CONVENIENCE: "便民类",
    Skill.CHARITY: "慈善类",
    Skill.TUTORING: "四点半课堂",
    Skill.ELDER_CARE: "助老",
    Skill.HEALTH: "健康",
    Skill.CULTURE_SPORTS: "文体",
}
CARE_NAMES_ZH: dict[CareType, str] = {
    CareType.ELDERLY_ALONE: "独居老人",
    CareType.DISABLED: "残疾人",
    CareType.HARDSHIP: "困难群众",
    CareType.LEFT_BEHIND_CHILD: "留守儿童",
}
RATING_NAMES_ZH: dict[Rating, str] = {
    Rating.SATISFIED: "满意",
    Rating.BASICALLY_SATISFIED: "基本满意",
    Rating.DISSATISFIED: "不满意",
}


def labels_zh() -> dict[str, dict[str, str]]:
    """Every zh-CN name above by kind and value, as the pages get them (labels.js)."""
    kinds: dict[str, Mapping[Any, str]] = {
        "category": CATEGORY_NAMES_ZH,
        "tier": TIER_NAMES_ZH,
        "mode": TIER_MODES_ZH,
        "level": LEVEL_NAMES_ZH,
        "skill": SKILL_NAMES_ZH,
        "care": CARE_NAMES_ZH,
        "rating": RATING_NAMES_ZH,
    }
    return {kind: {str(k): v for k, v in names.items()} for kind, names in kinds.items()}
