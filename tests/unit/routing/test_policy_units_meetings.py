"""The policy file, the unit registry and the joint-meeting calendar and agenda."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.routing.app import load_policy
from services.routing.config import RoutingSettings
from services.routing.domain import lifecycle, meetings
from services.routing.domain.classify import ClassifyInput, checked, classify
from services.routing.domain.policy import (
    MeetingSchedule,
    Policy,
    PolicyError,
    TierDeadlines,
    parse_duration,
)
from services.routing.domain.units import UnitKind, UnitRegistry
from tongxin.contracts.enums import Category, Tier, Urgency
from tongxin.runtime.settings import REPO_ROOT

POLICY_FILE = REPO_ROOT / "deploy" / "policy" / "routing.json"

ROOT = Path(__file__).resolve().parents[3]


def file_policy() -> dict[str, object]:
    raw: dict[str, object] = json.loads(POLICY_FILE.read_text("utf-8"))
    return raw


def test_the_policy_file_is_the_one_place_of_its_facts() -> None:
    """Every key is required: a fact missing from the file is refused, naming it (no
    default hides in code), and what the file says is what the policy decides with."""
    raw = file_policy()
    policy = Policy.from_dict(raw)
    assert policy.department_of[Category.SAFETY_HAZARD] == raw["department_of"]["safety_hazard"]  # type: ignore[index]
    assert policy.town_unit == raw["escalation"][1]["unit"]  # type: ignore[index]
    for key in raw:
        if key.startswith("_"):
            continue
        partial = {k: v for k, v in raw.items() if k != key}
        with pytest.raises(PolicyError, match=key):
            Policy.from_dict(partial)


def test_every_duration_is_scaled() -> None:
    p = Policy.load(POLICY_FILE).scaled(0.001)
    assert p.deadlines[Tier.ROUTINE].acknowledge == timedelta(seconds=3.6)
    assert p.deadlines[Tier.MAJOR].resolve == timedelta(days=15) * 0.001
    assert p.escalation[1].acknowledge == timedelta(seconds=7.2)
    assert p.feedback_window == timedelta(days=7) * 0.001
    shown = p.to_dict()
    assert shown["deadline_scale"] == 0.001
    assert shown["tiers"]["special"]["acknowledge_s"] == pytest.approx(1.8)
    assert shown["escalation"][2] == {
        "level": "county",
        "unit": "county:yongsheng",
        "acknowledge_s": pytest.approx(14.4),
    }


def test_policy_overrides_and_refusals() -> None:
    def edited(**changes: object) -> dict[str, object]:
        return {**file_policy(), **changes}

    tiers = dict(file_policy()["tiers"])  # type: ignore[call-overload]
    p = Policy.from_dict(
        edited(tiers={**tiers, "routine": {"acknowledge": "15m", "resolve": 7200}})
    )
    assert p.deadlines[Tier.ROUTINE] == TierDeadlines(timedelta(minutes=15), timedelta(hours=2))
    assert p.deadlines[Tier.GENERAL].acknowledge == timedelta(hours=24)
    with pytest.raises(PolicyError):
        checked(Policy.from_dict(edited(rules=["no-such-rule", "default-general"])))
    with pytest.raises(PolicyError):
        Policy.from_dict(edited(rules=["department"]))
    with pytest.raises(PolicyError):
        Policy.from_dict(
            edited(tiers={**tiers, "routine": {"acknowledge": "-1h", "resolve": "1h"}})
        )
    with pytest.raises(PolicyError):
        Policy.from_dict(edited(tiers={"routine": tiers["routine"]}))  # every tier needed
    with pytest.raises(PolicyError):
        Policy.from_dict(edited(escalation=[{"level": "community"}]))
    with pytest.raises(PolicyError):
        Policy.from_dict(edited(department_of={"no_such_category": "dept:x"}))


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("2h", 7200), ("7d", 604800), ("45s", 45), (90, 90)]
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def registry() -> UnitRegistry:
    seed = ROOT / "deploy" / "seed"
    return UnitRegistry.from_seed(
        json.loads((seed / "units.json").read_text("utf-8")),
        json.loads((seed / "communities.json").read_text("utf-8")),
    )


def test_registry_holds_the_alliance_and_every_community_station() -> None:
    units = registry()
    assert len(units.of_kind(UnitKind.DEPARTMENT)) == 11
    town = units.get("town:yongbei")
    assert town is not None and town.name == "永北镇党委" and town.liaison_group
    assert units.level_of("town:yongbei") == "town"
    assert units.level_of("county:yongsheng") == "county"
    for c in units.of_kind(UnitKind.COMMUNITY):
        slug = c.id.removeprefix("community:")
        for station in ("social-work", "mass-org", "property"):
            assert f"station:{slug}:{station}" in units
    assert units.of_kind(UnitKind.OWNERS_COMMITTEE)
    assert units.is_department("dept:civil-affairs")
    assert not units.is_department("community:liyuan")


def test_every_unit_the_policy_routes_to_is_registered() -> None:
    units = registry()
    policy = Policy.load(POLICY_FILE)
    assert set(policy.department_of.values()) <= {u.id for u in units.of_kind()}
    assert all(lv.unit in units for lv in policy.escalation[1:])
    for c in units.of_kind(UnitKind.COMMUNITY):
        for category in Category:
            for urgency in Urgency:
                for vulnerable in (False, True):
                    d = classify(ClassifyInput(category, urgency, vulnerable, c.id, None), policy)
                    assert all(u in units for u in d.units), (category, d.units)


MONTHLY = MeetingSchedule(cadence="monthly", day=25, hour=15)


def test_next_monthly_meeting() -> None:
    # 2025-07-25 15:00 +08:00 is 07:00 UTC
    assert meetings.next_meeting(MONTHLY, datetime(2025, 7, 1, tzinfo=UTC)) == (
        "M-2025-07-25",
        datetime(2025, 7, 25, 7, 0, tzinfo=UTC),
    )
    assert meetings.next_meeting(MONTHLY, datetime(2025, 7, 25, 7, 0, tzinfo=UTC))[0] == (
        "M-2025-08-25"
    )
    assert meetings.next_meeting(MONTHLY, datetime(2025, 12, 30, tzinfo=UTC))[0] == ("M-2026-01-25")
    short = MeetingSchedule(day=31)
    assert meetings.next_meeting(short, datetime(2025, 2, 1, tzinfo=UTC))[0] == "M-2025-02-28"


def test_weekly_meeting_and_meeting_ids() -> None:
    weekly = MeetingSchedule(cadence="weekly", day=0, hour=9)  # Mondays
    mid, at = meetings.next_meeting(weekly, datetime(2025, 7, 2, tzinfo=UTC))  # a Wednesday
    assert mid == "M-2025-07-07" and at == datetime(2025, 7, 7, 1, 0, tzinfo=UTC)
    assert meetings.meeting_date(weekly, "M-2025-07-07") is not None
    assert meetings.meeting_date(weekly, "M-2025-07-08") is None
    assert meetings.meeting_date(MONTHLY, "M-2025-07-25") is not None
    assert meetings.meeting_date(MONTHLY, "M-2025-07-24") is None
    assert meetings.meeting_date(MONTHLY, "M-2025-02-30") is None
    assert meetings.meeting_date(MONTHLY, "July") is None


def test_agenda_lists_undecided_deliberation_items_and_escalated_open_cases() -> None:
    policy = Policy.load(POLICY_FILE)
    now = datetime(2025, 7, 1, tzinfo=UTC)

    def case(n: int, category: Category) -> lifecycle.Case:
        d = classify(ClassifyInput(category, Urgency.NORMAL, False, "community:liyuan"), policy)
        c, _ = lifecycle.open_case(
            case_id=f"C-{n}",
            request_id=f"YS-{n}",
            category=category,
            community="community:liyuan",
            compound=None,
            decision=d,
            policy=policy,
            now=now + timedelta(minutes=n),
        )
        return c

    deliberate = case(1, Category.PUBLIC_AFFAIRS)
    escalated = case(2, Category.SAFETY_HAZARD)
    fx = lifecycle.on_deadline(
        escalated,
        "ack",
        escalated.assignments[0].deadline_id or "",
        policy,
        now + timedelta(hours=3),
    )
    assert fx.events
    plain = case(3, Category.SANITATION)
    decided = case(4, Category.PUBLIC_AFFAIRS)
    lifecycle.reassign(decided, ["owc:jinyuan"], policy, now, rule="meeting-decision")
    decided.meeting_decision = {"meeting_id": "M-2025-06-25"}
    items = meetings.agenda([escalated, plain, decided, deliberate])
    assert [(i["case_id"], i["item"]) for i in items] == [
        ("C-1", "deliberation"),
        ("C-2", "escalated"),
    ]


def test_a_policy_naming_a_rule_this_code_lacks_is_refused_at_start(tmp_path: Path) -> None:
    raw = file_policy()
    assert list(checked(Policy.from_dict(raw)).rules) == raw["rules"]
    raw["rules"] = ["no-such-rule", *raw["rules"]]  # type: ignore[misc]
    with pytest.raises(PolicyError, match="no-such-rule"):
        written = tmp_path / "routing.json"
        written.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
        load_policy(RoutingSettings(env="test", routing_policy_file=written))
