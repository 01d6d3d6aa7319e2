"""Realistic, randomized bodies for ``POST /v1/requests``.

Categories come from :class:`tongxin.contracts.enums.Category`, communities and compounds
from the seed file (``deploy/seed/communities.json``); titles and descriptions are Chinese
with varying details (so near-duplicate linking sees ordinary traffic, not one text
repeated), submitters have common names and mainland mobile numbers.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tongxin.contracts.enums import Category, Channel, Urgency

SEED_FILE = Path(__file__).resolve().parents[1] / "deploy" / "seed" / "communities.json"

# (title, description) templates; {b} building, {u} unit, {f} floor, {d} days, {n} a count,
# {t} a time of day, {w} a weekday.
TEMPLATES: dict[Category, tuple[tuple[str, str], ...]] = {
    Category.PROPERTY_SERVICE: (
        ("{b}栋电梯故障", "{b}栋{u}单元电梯已经停运{d}天，楼上有老人和孩子，上下楼很不方便。"),
        ("地下车库漏水", "地下车库{b}号区域顶部持续漏水{d}天，车辆被泡，物业一直没有处理。"),
        ("单元门禁损坏", "{b}栋{u}单元门禁坏了{d}天，陌生人随意进出，居民担心安全。"),
        ("物业收费有疑问", "今年物业费比去年每平方多收{n}角，没有公示依据，希望给个说明。"),
    ),
    Category.PUBLIC_FACILITIES: (
        ("路灯不亮", "{b}栋旁边的路灯已经坏了{d}天，{t}以后一片漆黑，老人散步容易摔倒。"),
        ("健身器材损坏", "小区广场的健身器材有{n}件松动断裂，孩子在上面玩很危险。"),
        ("雨水井堵塞", "{b}栋门口雨水井堵塞，下雨后积水有{n}厘米深，出行困难。"),
        ("道路坑洼", "小区主干道有{n}处坑洼，{w}下雨后电动车摔倒过好几次。"),
    ),
    Category.SANITATION: (
        ("楼道垃圾堆放", "{b}栋{u}单元楼道堆放垃圾{d}天无人清理，气味很大，招来蚊蝇。"),
        ("化粪池外溢", "{b}栋后面化粪池外溢{d}天，污水流到人行道上，味道刺鼻。"),
        ("垃圾桶满溢", "小区东门{n}个垃圾桶每天{t}就满了，垃圾散落一地，希望增加清运次数。"),
        ("老鼠多", "{b}栋一楼最近老鼠很多，{n}户居民反映，希望统一灭鼠。"),
    ),
    Category.NEIGHBOUR_DISPUTE: (
        ("楼上噪音扰民", "{b}栋{f}楼住户每天{t}以后还在装修敲打，已经持续{d}天，协商无果。"),
        ("邻里漏水纠纷", "楼上{f}楼卫生间漏水到我家天花板，沟通{n}次对方不愿维修。"),
        ("宠物扰民", "{b}栋有住户养的狗每天{t}狂叫，还随地便溺，邻居多次沟通无效。"),
        ("车位占用纠纷", "我家固定车位被同单元住户长期占用{d}天，双方发生争执，请社区调解。"),
    ),
    Category.EMPLOYMENT: (
        ("求职帮扶", "家里{n}口人，本人失业{d}天，会开车和电焊，希望社区帮忙推荐工作。"),
        ("技能培训咨询", "搬迁后没有稳定收入，想参加家政或餐饮技能培训，请问{w}哪里可以报名。"),
        ("返乡创业咨询", "外出务工返乡，想在镇上开一家早餐店，想了解创业担保贷款政策。"),
    ),
    Category.EDUCATION: (
        ("孩子入学咨询", "孩子今年{n}岁，随迁到{compound}，想咨询就近入学需要准备哪些材料。"),
        ("学生辍学劝返", "{b}栋有一名初二学生已经{d}天没有去上学，家长外出务工管不了。"),
        ("转学手续办理", "家里搬到{compound}，孩子需要从乡下小学转到县城，手续不清楚。"),
    ),
    Category.ELDERLY_CARE: (
        ("独居老人需要助餐", "{b}栋独居老人今年{n}岁，行动不便，希望有志愿者帮忙送餐。"),
        ("老人需要陪同就医", "{b}栋{u}单元一位{n}岁老人{w}要去县医院复查，子女不在身边。"),
        ("高龄补贴咨询", "家里老人满{n}岁了，想咨询高龄津贴怎么申请、需要哪些材料。"),
    ),
    Category.SOCIAL_ASSISTANCE: (
        ("困难家庭求助", "家中{n}口人，丈夫生病住院{d}天，医药费负担很重，希望申请临时救助。"),
        ("低保申请咨询", "本人残疾，没有固定收入，想了解低保申请流程，{w}能否上门指导。"),
        ("大病救助", "孩子确诊重病已治疗{d}天，花费{n}万元，家庭困难，请求帮助。"),
    ),
    Category.LEGAL_AID: (
        ("工资被拖欠", "在工地务工被拖欠工资{n}个月，包工头联系不上，需要法律援助。"),
        ("赡养纠纷咨询", "{n}个子女都不愿赡养老人，想咨询怎么通过法律途径解决。"),
        ("工伤赔偿咨询", "在厂里干活受伤休养{d}天，老板不肯赔偿，想申请法律援助。"),
    ),
    Category.SAFETY_HAZARD: (
        ("燃气管道异味", "{b}栋{u}单元楼道燃气管道有明显气味{d}天了，疑似泄漏，很危险。"),
        ("电动车楼道充电", "{b}栋有{n}户居民把电动车推进楼道充电，存在火灾隐患。"),
        ("外墙瓷砖脱落", "{b}栋外墙瓷砖脱落，{w}砸到楼下停放的车辆，差点伤人。"),
        ("消防通道堵塞", "小区消防通道被{n}辆私家车长期占用，发生火灾消防车进不来。"),
    ),
    Category.RELOCATION_SUPPORT: (
        ("搬迁户就业需求", "易地搬迁到{compound}已经{n}年，家里{n}个劳动力没有稳定工作。"),
        ("搬迁户户籍迁移", "搬迁后户口还在老家，孩子上学和医保报销不方便，想办理户籍迁移。"),
        ("安置房质量问题", "{b}栋安置房墙体开裂{d}天，雨天渗水，希望有关部门来查看。"),
    ),
    Category.AGRICULTURE: (
        ("果树病虫害", "家里{n}亩果树出现病虫害，叶子大面积发黄，想请农技员指导。"),
        ("农资补贴咨询", "今年种了{n}亩烤烟，想了解农资补贴和农业保险怎么申请。"),
        ("灌溉水渠损坏", "村里灌溉水渠坏了{d}天，{n}亩地浇不上水，影响春耕。"),
    ),
    Category.YOUTH_FAMILY: (
        ("留守儿童课后看护", "{b}栋有{n}个留守儿童放学后无人照看，希望四点半课堂能接收。"),
        ("青少年心理疏导", "孩子{n}岁，最近{d}天不愿说话也不去学校，家长希望有心理辅导。"),
        ("家庭矛盾调解", "夫妻因为孩子教育问题长期争吵，{w}又吵得很凶，希望妇联帮忙调解。"),
    ),
    Category.PUBLIC_AFFAIRS: (
        ("加装电梯意见征集", "{b}栋想加装电梯，{n}户中有部分住户不同意，希望召开议事会商量。"),
        ("公共收益使用", "小区广告位和停车费的公共收益一年约{n}万元，希望公开使用情况。"),
        ("停车位规划", "小区车位不够，{w}晚上车辆乱停，建议业委会牵头重新规划停车位。"),
    ),
    Category.SUGGESTION: (
        ("建议增设便民服务点", "建议在{compound}增设便民服务点，方便老人办理社保和缴费。"),
        ("建议开通公交线路", "小区到县医院没有公交，建议开通一条线路，{t}前后各发一班。"),
        ("建议开展文体活动", "希望社区每月组织{n}次文体活动，丰富居民的业余生活。"),
    ),
}

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN = (
    "秀英",
    "桂英",
    "秀兰",
    "玉兰",
    "建华",
    "建国",
    "建军",
    "志强",
    "国强",
    "文华",
    "海燕",
    "丽华",
    "丽娟",
    "俊杰",
    "晓东",
    "晓明",
    "德明",
    "永福",
    "春梅",
    "红梅",
    "金凤",
    "云",
    "勇",
    "军",
    "杰",
    "敏",
    "静",
    "磊",
    "强",
    "艳",
    "芳",
    "娟",
    "涛",
    "斌",
    "超",
    "洋",
)
# Mainland mobile number blocks (China Mobile, Unicom, Telecom, Broadnet).
MOBILE_PREFIXES = (
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "147",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "172",
    "178",
    "182",
    "183",
    "184",
    "187",
    "188",
    "195",
    "197",
    "198",
    "130",
    "131",
    "132",
    "145",
    "155",
    "156",
    "166",
    "175",
    "176",
    "185",
    "186",
    "196",
    "133",
    "149",
    "153",
    "173",
    "177",
    "180",
    "181",
    "189",
    "190",
    "191",
    "193",
    "199",
    "192",
)
TIMES = ("晚上十点", "晚上十一点", "凌晨", "中午", "下午五点", "早上七点")
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日", "昨天", "前天")

# How requests reach intake, roughly as a county platform sees them.
CHANNEL_WEIGHTS = {
    Channel.APP: 55,
    Channel.HOTLINE: 20,
    Channel.GRID_WORKER: 12,
    Channel.OWNERS_COMMITTEE: 5,
    Channel.SUGGESTION_BOX: 4,
    Channel.VOLUNTEER: 4,
}
URGENCY_WEIGHTS = {Urgency.NORMAL: 85, Urgency.URGENT: 12, Urgency.EMERGENCY: 3}


@dataclass(frozen=True, slots=True)
class Place:
    """A compound of a community, as in the seed file."""

    community: str
    compound: str
    name: str
    lat: float | None
    lng: float | None


def load_places(path: Path = SEED_FILE) -> list[Place]:
    """Every compound of the seed file with its community."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    places: list[Place] = []
    for community in raw["communities"]:
        for c in community.get("compounds", []):
            places.append(Place(community["id"], c["id"], c["name"], c.get("lat"), c.get("lng")))
    if not places:
        raise ValueError(f"no compounds in {path}")
    return places


class BodyFactory:
    """Makes request bodies from a seeded random generator (reproducible runs)."""

    def __init__(self, places: list[Place], seed: int | None = None) -> None:
        self.places = places
        self.rnd = random.Random(seed)
        self.categories = list(Category)
        self._channels = list(CHANNEL_WEIGHTS)
        self._channel_w = list(CHANNEL_WEIGHTS.values())
        self._urgencies = list(URGENCY_WEIGHTS)
        self._urgency_w = list(URGENCY_WEIGHTS.values())

    def phone(self) -> str:
        """A mainland mobile number (11 digits)."""
        r = self.rnd
        return r.choice(MOBILE_PREFIXES) + "".join(r.choice("0123456789") for _ in range(8))

    def name(self) -> str:
        """A common Chinese name."""
        return self.rnd.choice(SURNAMES) + self.rnd.choice(GIVEN)

    def body(self) -> dict[str, Any]:
        """One ``POST /v1/requests`` body."""
        r = self.rnd
        category = r.choice(self.categories)
        place = r.choice(self.places)
        title, description = r.choice(TEMPLATES[category])
        building, unit = r.randint(1, 24), r.randint(1, 6)
        fill = {
            "b": building,
            "u": unit,
            "f": r.randint(2, 18),
            "d": r.randint(2, 30),
            "n": r.randint(2, 12),
            "t": r.choice(TIMES),
            "w": r.choice(WEEKDAYS),
            "compound": place.name,
        }
        body: dict[str, Any] = {
            "channel": r.choices(self._channels, self._channel_w)[0].value,
            "category": category.value,
            "title": title.format(**fill),
            "description": description.format(**fill),
            "community": place.community,
            "compound": place.compound,
            "urgency": r.choices(self._urgencies, self._urgency_w)[0].value,
            "submitter": {
                "name": self.name(),
                "phone": self.phone(),
                "party_member": r.random() < 0.15,
            },
        }
        if r.random() < 0.05:
            body["vulnerable"] = True
        if r.random() < 0.4:
            body["address"] = (
                f"{place.name}{building}栋{unit}单元{r.randint(1, 18)}0{r.randint(1, 4)}室"
            )
        if r.random() < 0.2 and place.lat is not None and place.lng is not None:
            body["location"] = {
                "lat": round(place.lat + r.uniform(-0.0015, 0.0015), 6),
                "lng": round(place.lng + r.uniform(-0.0015, 0.0015), 6),
            }
        attributes: dict[str, Any] = {}
        if r.random() < 0.3:
            attributes["building"] = f"{building}栋{unit}单元"
        if r.random() < 0.03:
            attributes["cross_department"] = True
        if attributes:
            body["attributes"] = attributes
        return body
