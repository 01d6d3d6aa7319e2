"""Rules, directory and templates as shipped, and the planner's decisions (no I/O)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.notify.app import load_planner
from services.notify.config import NotifySettings
from services.notify.domain.directory import Directory
from services.notify.domain.plan import Planner, Preference
from services.notify.domain.quiet import SHANGHAI, QuietHours
from services.notify.domain.rules import SELECTORS, Facts, Rule, RuleSet
from services.notify.domain.templates import TemplateError, Templates
from tests.unit.notify.samples import CASE, CONTACT, NOW, samples
from tongxin.contracts.enums import NotifyChannel, Rating

ROOT = Path(__file__).resolve().parents[3]
ALL = frozenset(NotifyChannel)


def full_settings(**kw: Any) -> NotifySettings:
    return NotifySettings(
        notify_webhook_url="http://127.0.0.1:1/hook",
        notify_wecom_url="http://127.0.0.1:1/wecom",
        notify_dingtalk_url="http://127.0.0.1:1/dingtalk",
        notify_smtp_host="127.0.0.1",
        notify_sms_gateway_url="http://127.0.0.1:1/sms",
        **kw,
    )


@pytest.fixture(scope="module")
def planner() -> Planner:
    return load_planner(full_settings())


def facts_for(event: Any, **kw: Any) -> Facts:
    return Facts(
        event.event_type,
        event.model_dump(mode="python"),
        kw.get("case", CASE),
        kw.get("contact", CONTACT),
    )


def by_type(event_type: str) -> Any:
    return next(e for e in samples() if e.event_type == event_type)


def test_directory_covers_every_seed_unit(planner: Planner) -> None:
    units = json.loads((ROOT / "deploy/seed/units.json").read_text())
    communities = json.loads((ROOT / "deploy/seed/communities.json").read_text())
    ids = {units["town"]["id"], units["county"]["id"]}
    ids |= {d["id"] for d in units["departments"]}
    ids |= {f"liaison:{d['id']}" for d in units["departments"]}
    for c in communities["communities"]:
        ids.add(c["id"])
        ids |= {s["id"] for s in c["stations"].values()}
    missing = ids - set(planner.directory.ids())
    assert not missing
    for d in units["departments"]:
        entry = planner.directory.get(d["id"])
        assert entry is not None and entry.liaison == f"liaison:{d['id']}"
        liaison = planner.directory.get(f"liaison:{d['id']}")
        assert liaison is not None and liaison.name == d["liaison"]


def test_every_event_renders_strictly_on_every_channel(planner: Planner) -> None:
    """Every rule's template renders for a sample of its event on every channel it uses."""
    seen_types = set()
    for event in samples():
        for p in planner.plan(facts_for(event), {}, NOW):
            seen_types.add(event.event_type)
            assert p.message.text and p.message.title
            assert "{{" not in p.message.text
            if p.channel is NotifyChannel.SMS:
                assert p.message.sms_code and p.message.sms_params
        # and directly on every channel, whatever the recipients prefer
        for rule in planner.rules.matching(event.event_type, event.model_dump()):
            for ch in NotifyChannel:
                if planner.templates.supports(rule.template, ch):
                    planner.templates.render(
                        rule.template,
                        ch,
                        planner.variables(
                            facts_for(event),
                            planner.directory.get("staff:duty"),  # type: ignore[arg-type]
                        ),
                    )
    assert seen_types >= planner.rules.event_types()


def test_rules_telling_staff_also_tell_the_staff_feed(planner: Planner) -> None:
    staffish = {"units", "case_units", "liaisons", "unit", "to_unit", "town", "community"}
    for rule in planner.rules.rules:
        if staffish & set(rule.to):
            assert "staff" in rule.to, rule


def test_case_routed_reaches_units_liaison_and_staff_webhook(planner: Planner) -> None:
    plan = planner.plan(facts_for(by_type("case.routed")), {}, NOW)
    got = {(p.recipient.id, p.channel) for p in plan}
    assert ("staff:duty", NotifyChannel.WEBHOOK) in got
    assert ("community:liyuan", NotifyChannel.WECOM) in got
    assert ("dept:civil-affairs", NotifyChannel.EMAIL) in got
    assert ("liaison:dept:civil-affairs", NotifyChannel.DINGTALK) in got
    text = next(p for p in plan if p.recipient.id == "staff:duty").message.text
    assert "梨园社区、县民政局" in text and "22:00" not in text
    assert "2025年05月01日 16:00" in text  # acknowledge_by in Beijing time
    assert "联席会议" in text and "助老" in text
    assert len(got) == len(plan)  # at most one per recipient and channel


def test_submitter_gets_sms_with_template_code(planner: Planner) -> None:
    plan = planner.plan(facts_for(by_type("request.submitted")), {}, NOW)
    assert [(p.recipient.id, p.channel) for p in plan] == [
        ("submitter:YS-20250501-0001", NotifyChannel.SMS)
    ]
    msg = plan[0].message
    assert msg.sms_code == "SMS_TX_REQUEST_RECEIVED"
    assert msg.sms_params == {"name": "李建华", "id": "YS-20250501-0001"}
    assert plan[0].recipient.addresses["phone"] == "13987654321"


def test_no_contact_no_submitter_message(planner: Planner) -> None:
    plan = planner.plan(facts_for(by_type("case.resolved"), contact=None), {}, NOW)
    assert plan == []


def test_escalation_goes_to_the_town_and_bypasses_quiet_hours(planner: Planner) -> None:
    night = datetime(2025, 5, 1, 3, 0, tzinfo=SHANGHAI)
    plan = planner.plan(facts_for(by_type("case.escalated")), {}, night)
    ids = {p.recipient.id for p in plan}
    assert {"town:yongbei", "community:liyuan", "liaison:dept:civil-affairs", "staff:duty"} <= ids
    assert all(p.critical and p.not_before is None for p in plan)


def test_quiet_hours_defer_a_routine_message_until_the_window_ends(planner: Planner) -> None:
    night = datetime(2025, 5, 1, 23, 30, tzinfo=SHANGHAI)
    plan = planner.plan(facts_for(by_type("task.offered")), {}, night)
    vol = next(p for p in plan if p.recipient.id == "volunteer:vol:001")
    assert vol.not_before == datetime(2025, 5, 2, 7, 0, tzinfo=SHANGHAI)
    staff = next(p for p in plan if p.recipient.id == "staff:duty")
    assert staff.not_before is None  # the staff feed has no quiet hours


def test_an_emergency_bypasses_quiet_hours(planner: Planner) -> None:
    night = datetime(2025, 5, 1, 23, 30, tzinfo=SHANGHAI)
    plan = planner.plan(facts_for(by_type("task.offered")), {}, night, emergency=True)
    assert all(p.not_before is None and p.critical for p in plan)


def test_a_preference_replaces_channels_and_quiet_hours(planner: Planner) -> None:
    pref = Preference((NotifyChannel.WECOM,), QuietHours.parse("13:00", "15:00"))
    plan = planner.plan(facts_for(by_type("task.offered")), {"volunteer:vol:001": pref}, NOW)
    vol = [p for p in plan if p.recipient.id == "volunteer:vol:001"]
    # the volunteer has no WeCom key: no usable channel, so the console fallback
    assert [(p.channel, p.fallback) for p in vol] == [(NotifyChannel.CONSOLE, True)]
    assert vol[0].not_before == datetime(2025, 5, 1, 15, 0, tzinfo=SHANGHAI)


def test_disabled_channels_fall_back_to_console_or_nothing() -> None:
    dev = load_planner(NotifySettings())
    plan = dev.plan(facts_for(by_type("case.routed")), {}, NOW)
    assert {p.channel for p in plan} == {NotifyChannel.CONSOLE}
    silent = load_planner(NotifySettings(notify_console_fallback=False))
    assert silent.plan(facts_for(by_type("case.routed")), {}, NOW) == []


def test_when_conditions_select_rules(planner: Planner) -> None:
    fb = by_type("request.feedback_given")
    assert planner.plan(facts_for(fb), {}, NOW)
    happy = fb.model_copy(update={"rating": Rating.SATISFIED})
    assert planner.plan(facts_for(happy), {}, NOW) == []
    assert planner.plan(facts_for(by_type("task.declined")), {}, NOW) == []


def test_care_overdue_reaches_community_station_volunteers_and_staff(planner: Planner) -> None:
    plan = planner.plan(facts_for(by_type("care.visit_overdue"), case=None, contact=None), {}, NOW)
    ids = {p.recipient.id for p in plan}
    assert ids == {
        "community:liyuan",
        "station:liyuan:social-work",
        "volunteer:vol:001",
        "staff:duty",
    }
    assert "独居老人" in plan[0].message.text and "cr-1" in plan[0].message.text


def test_unknown_selectors_and_shapes_are_refused() -> None:
    with pytest.raises(ValidationError):
        Rule(event="case.routed", to=["everyone"], template="x")
    with pytest.raises(ValidationError):
        RuleSet({"rules": [{"event": "case.routed", "to": ["units"], "template": "x", "oops": 1}]})
    doc = yaml.safe_load((ROOT / "deploy/notify/directory.yaml").read_text())
    doc["recipients"].append(doc["recipients"][0])
    with pytest.raises(ValidationError, match="listed twice"):
        Directory(doc)
    doc = yaml.safe_load((ROOT / "deploy/notify/directory.yaml").read_text())
    doc["staff"] = ["staff:nobody"]
    with pytest.raises(ValidationError, match="unknown recipients"):
        Directory(doc)
    assert "staff" in SELECTORS


def test_a_missing_variable_is_an_error_in_strict_mode_only() -> None:
    doc = {"templates": {"t": {"title": "标题", "text": "你好 {{ nobody }}"}}}
    with pytest.raises(TemplateError, match="nobody"):
        Templates(doc, strict=True).render("t", NotifyChannel.CONSOLE, {})
    assert Templates(doc, strict=False).render("t", NotifyChannel.CONSOLE, {}).text == "你好"
    with pytest.raises(TemplateError):
        Templates({"templates": {"t": {"title": "x", "text": "{% if %}"}}})


def test_lines_join_without_spaces_and_sms_needs_a_code() -> None:
    doc = {
        "templates": {
            "t": {"title": "标题", "text": "第一行，\n  第二行。", "markdown": "# a\n- b"}
        }
    }
    t = Templates(doc)
    assert t.render("t", NotifyChannel.WEBHOOK, {}).text == "第一行，第二行。"
    assert t.render("t", NotifyChannel.WECOM, {}).text == "# a\n- b"
    assert not t.supports("t", NotifyChannel.SMS)
    with pytest.raises(TemplateError):
        t.render("t", NotifyChannel.SMS, {})


def test_settings_enable_channels_and_validate_limits() -> None:
    assert NotifySettings().enabled_channels() == {NotifyChannel.WEBHOOK, NotifyChannel.CONSOLE}
    assert full_settings().enabled_channels() == ALL
    s = NotifySettings(notify_channel_timeouts={"sms": 2.5}, notify_timeout_s=7)
    assert s.timeout_for(NotifyChannel.SMS) == 2.5 and s.timeout_for(NotifyChannel.EMAIL) == 7
    with pytest.raises(ValidationError):
        NotifySettings(notify_channel_timeouts={"pager": 1})
    with pytest.raises(ValidationError):
        NotifySettings(notify_channel_concurrency={"sms": 0})
    assert NotifySettings(env="production", jwt_secret="x" * 40).strict_templates is False
    assert NotifySettings(env="test").strict_templates is True
