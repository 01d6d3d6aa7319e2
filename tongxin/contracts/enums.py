"""Enumerations shared across topics and APIs (SPEC §1)."""

from enum import StrEnum


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
