"""Every lifecycle transition, good and bad; return and reassignment; escalation; feedback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.routing.domain import lifecycle
from services.routing.domain.classify import ClassifyInput, classify
from services.routing.domain.lifecycle import (
    Action,
    Case,
    Effects,
    NotAssigned,
    Status,
    TransitionError,
)
from services.routing.domain.policy import Policy
from tongxin.contracts.enums import Category, Rating, Tier, Urgency
from tongxin.contracts.events import (
    CaseAcknowledged,
    CaseClosed,
    CaseEscalated,
    CaseProgressed,
    CaseReopened,
    CaseResolved,
    CaseReturned,
    CaseRouted,
)
from tongxin.runtime.settings import REPO_ROOT

POLICY_FILE = REPO_ROOT / "deploy" / "policy" / "routing.json"

POLICY = Policy.load(POLICY_FILE)
T0 = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
COMMUNITY, PROPERTY = "community:liyuan", "station:liyuan:property"
DEPT, TOWN, COUNTY = "dept:housing", "town:yongbei", "county:yongsheng"


def open_case(category: Category = Category.SANITATION, **kw: object) -> tuple[Case, Effects]:
    fields: dict[str, object] = {
        "urgency": Urgency.NORMAL,
        "vulnerable": False,
        "community": COMMUNITY,
        "compound": "compound:jinyuan",
    }
    fields.update(kw)
    decision = classify(ClassifyInput(category=category, **fields), POLICY)  # type: ignore[arg-type]
    return lifecycle.open_case(
        case_id="C-1",
        request_id="YS-1",
        category=category,
        community=COMMUNITY,
        compound="compound:jinyuan",
        decision=decision,
        policy=POLICY,
        now=T0,
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def act(case: Case, action: Action, unit: str, minutes: float, **kw: str) -> Effects:
    return lifecycle.act(case, action, unit, at(minutes), POLICY, **kw)


def test_open_routine_case_assigns_a_lead_with_an_acknowledge_deadline() -> None:
    case, fx = open_case()
    assert case.status == Status.ROUTED and case.tier == Tier.ROUTINE
    assert case.accountable_unit == PROPERTY
    lead = case.assignment(PROPERTY)
    assert lead is not None and lead.role == "lead" and lead.acknowledge_by == at(60)
    support = case.assignment(COMMUNITY)
    assert support is not None and support.acknowledge_by is None
    assert [type(e) for e in fx.events] == [CaseRouted]
    routed = fx.events[0]
    assert isinstance(routed, CaseRouted)
    assert routed.classification.rule == "everyday-item" and routed.revision == 0
    assert routed.acknowledge_by == at(60) and routed.resolve_by == T0 + timedelta(hours=24)
    assert sorted(d.kind for d in fx.schedule) == ["ack", "resolve"]


def test_major_case_whistles_the_department_and_the_town_coordinates() -> None:
    case, _ = open_case(Category.SAFETY_HAZARD)
    dept = case.assignment(DEPT)
    town = case.assignment(TOWN)
    assert dept is not None and dept.role == "whistled" and dept.acknowledge_by == at(120)
    assert town is not None and town.role == "coordinator" and town.acknowledge_by is None
    assert case.whistled and case.units == [DEPT, TOWN]


def test_happy_path_acknowledge_progress_resolve_then_satisfied_closes() -> None:
    case, _ = open_case()
    fx = act(case, Action.ACKNOWLEDGE, PROPERTY, 10, by="u1")
    assert case.status == Status.ACKNOWLEDGED
    ev = fx.events[0]
    assert isinstance(ev, CaseAcknowledged) and ev.in_time and ev.by == "u1"
    assert fx.cancel == [case.assignments[0].deadline_id or "ack:C-1:1"]
    assert fx.report_in_s == [("routine", 600.0)]
    fx = act(case, Action.PROGRESS, PROPERTY, 20, note="师傅已上门")
    assert case.status == Status.IN_PROGRESS and isinstance(fx.events[0], CaseProgressed)
    fx = act(case, Action.PROGRESS, COMMUNITY, 30, note="社区跟进")
    assert case.status == Status.IN_PROGRESS
    fx = act(case, Action.RESOLVE, PROPERTY, 40)
    assert case.status == Status.RESOLVED and case.resolved_in_time
    assert isinstance(fx.events[0], CaseResolved) and fx.events[0].in_time
    assert [d.kind for d in fx.schedule] == ["feedback"]
    assert case.resolve_deadline is None
    fx = lifecycle.give_feedback(case, Rating.SATISFIED, at(50), POLICY)
    assert case.status == Status.CLOSED and case.close_reason == "satisfied"
    assert isinstance(fx.events[0], CaseClosed) and fx.events[0].reason == "satisfied"
    assert case.feedback_deadline is None and fx.cancel  # the feedback deadline stops


def test_basically_satisfied_closes_too() -> None:
    case, _ = open_case()
    act(case, Action.ACKNOWLEDGE, PROPERTY, 1)
    act(case, Action.RESOLVE, PROPERTY, 2)
    lifecycle.give_feedback(case, Rating.BASICALLY_SATISFIED, at(3), POLICY)
    assert case.status == Status.CLOSED and case.close_reason == "basically_satisfied"


def test_dissatisfied_reopens_with_fresh_deadlines_and_the_lead_acknowledges_again() -> None:
    case, _ = open_case()
    act(case, Action.ACKNOWLEDGE, PROPERTY, 1)
    act(case, Action.RESOLVE, PROPERTY, 2)
    fx = lifecycle.give_feedback(case, Rating.DISSATISFIED, at(3), POLICY, "没修好")
    assert case.status == Status.REOPENED and case.reopen_count == 1
    ev = fx.events[0]
    assert isinstance(ev, CaseReopened) and ev.reason == "没修好"
    assert sorted(d.kind for d in fx.schedule) == ["ack", "resolve"]
    assert case.allowed_actions(PROPERTY) == ["acknowledge", "return"]
    act(case, Action.ACKNOWLEDGE, PROPERTY, 4)
    assert case.status == Status.ACKNOWLEDGED


def test_no_feedback_in_the_window_closes_the_case() -> None:
    case, _ = open_case()
    act(case, Action.ACKNOWLEDGE, PROPERTY, 1)
    fx = act(case, Action.RESOLVE, PROPERTY, 2)
    fid = fx.schedule[0].id
    fx = lifecycle.on_deadline(case, "feedback", fid, POLICY, at(2) + POLICY.feedback_window)
    assert case.status == Status.CLOSED and case.close_reason == "no_feedback"
    assert isinstance(fx.events[0], CaseClosed)


@pytest.mark.parametrize(
    ("steps", "bad", "allowed"),
    [
        ([], Action.PROGRESS, ["acknowledge", "return"]),
        ([], Action.RESOLVE, ["acknowledge", "return"]),
        ([Action.ACKNOWLEDGE], Action.ACKNOWLEDGE, ["progress", "resolve", "return"]),
        ([Action.ACKNOWLEDGE, Action.RESOLVE], Action.PROGRESS, []),
        ([Action.ACKNOWLEDGE, Action.RESOLVE], Action.RESOLVE, []),
        ([Action.ACKNOWLEDGE, Action.RESOLVE], Action.RETURN, []),
        ([Action.RETURN], Action.ACKNOWLEDGE, []),
        ([Action.RETURN], Action.RESOLVE, []),
    ],
)
def test_invalid_transitions_name_the_allowed_ones_and_change_nothing(
    steps: list[Action], bad: Action, allowed: list[str]
) -> None:
    case, _ = open_case()
    for i, step in enumerate(steps):
        act(case, step, PROPERTY, i + 1, reason="不属于本单位职责")
    before = case.to_doc()
    with pytest.raises(TransitionError) as err:
        act(case, bad, PROPERTY, 30, reason="再次退单")
    assert err.value.allowed == allowed
    assert case.to_doc() == before


def test_closed_case_allows_nothing() -> None:
    case, _ = open_case()
    lifecycle.withdraw(case, at(1), "已自行解决")
    for action in Action:
        with pytest.raises(TransitionError):
            act(case, action, PROPERTY, 2, reason="x")


def test_a_unit_not_on_the_case_is_refused() -> None:
    case, _ = open_case()
    with pytest.raises(NotAssigned):
        act(case, Action.ACKNOWLEDGE, "dept:justice", 1)


def test_late_acknowledgment_is_recorded_as_not_in_time() -> None:
    case, _ = open_case()
    fx = act(case, Action.ACKNOWLEDGE, PROPERTY, 61)
    ev = fx.events[0]
    assert isinstance(ev, CaseAcknowledged) and not ev.in_time


def test_return_goes_to_the_town_while_the_first_receiver_stays_accountable() -> None:
    case, _ = open_case()
    resolve_id = case.resolve_deadline
    fx = act(case, Action.RETURN, PROPERTY, 5, reason="属于住建部门职责")
    assert case.status == Status.RETURNED
    ev = fx.events[0]
    assert isinstance(ev, CaseReturned) and ev.reason == "属于住建部门职责"
    assert case.accountable_unit == PROPERTY
    assert resolve_id not in fx.cancel and case.resolve_deadline == resolve_id
    town = case.assignment(TOWN)
    assert town is not None and town.acknowledge_by == at(5) + timedelta(hours=2)
    assert [d.payload for d in fx.schedule] == [{"unit": TOWN}]
    # the town committee reassigns to the housing department
    fx = lifecycle.reassign(case, [DEPT], POLICY, at(30), by="town-staff", note="转住建局")
    assert case.status == Status.ROUTED and case.revision == 1
    assert case.accountable_unit == DEPT and case.units == [DEPT, TOWN]
    routed = fx.events[0]
    assert isinstance(routed, CaseRouted)
    assert routed.revision == 1 and not routed.needs_volunteers
    assert routed.classification.rule == "reassigned"
    assert routed.classification.inputs["previous_units"] == [PROPERTY, COMMUNITY, TOWN]
    town_done = next(a for a in case.assignments if a.unit == TOWN and not a.active)
    assert town_done.in_time is True
    assert resolve_id in fx.cancel  # fresh deadlines for the new unit
    old = next(a for a in case.assignments if a.unit == PROPERTY)
    assert not old.active
    with pytest.raises(NotAssigned):
        act(case, Action.ACKNOWLEDGE, PROPERTY, 31)
    act(case, Action.ACKNOWLEDGE, DEPT, 32)
    assert case.status == Status.ACKNOWLEDGED


def test_return_needs_a_reason() -> None:
    case, _ = open_case()
    with pytest.raises(TransitionError):
        act(case, Action.RETURN, PROPERTY, 1)
    assert case.status == Status.ROUTED


def test_the_town_cannot_return_a_case() -> None:
    case, _ = open_case(Category.SAFETY_HAZARD)
    assert "return" not in case.allowed_actions(TOWN)


def test_unreturned_town_deadline_escalates_to_the_county() -> None:
    case, _ = open_case()
    fx = act(case, Action.RETURN, PROPERTY, 5, reason="不归我管")
    town_deadline = fx.schedule[0].id
    fx = lifecycle.on_deadline(case, "ack", town_deadline, POLICY, at(200))
    ev = fx.events[0]
    assert isinstance(ev, CaseEscalated)
    assert (ev.from_level, ev.to_level, ev.to_unit) == ("town", "county", COUNTY)


def test_missed_report_in_escalates_once_to_the_town_then_the_county() -> None:
    case, fx = open_case(Category.SAFETY_HAZARD)
    dept_deadline = next(d.id for d in fx.schedule if d.payload.get("unit") == DEPT)
    fx = lifecycle.on_deadline(case, "ack", dept_deadline, POLICY, at(121))
    ev = fx.events[0]
    assert isinstance(ev, CaseEscalated) and ev.trigger == "deadline_missed"
    assert (ev.from_level, ev.to_level, ev.to_unit) == ("community", "town", TOWN)
    assert ev.deadline == at(121) + timedelta(hours=2)
    assert case.level == "town" and fx.breaches == [("major", "community")]
    town_deadline = fx.schedule[0].id
    # the same deadline again changes nothing (a stale or repeated firing)
    assert not lifecycle.on_deadline(case, "ack", dept_deadline, POLICY, at(122)).changed
    fx = lifecycle.on_deadline(case, "ack", town_deadline, POLICY, at(300))
    ev = fx.events[0]
    assert isinstance(ev, CaseEscalated) and (ev.to_level, ev.to_unit) == ("county", COUNTY)
    county_deadline = fx.schedule[0].id
    fx = lifecycle.on_deadline(case, "ack", county_deadline, POLICY, at(600))
    assert fx.events == [] and fx.breaches == [("major", "county")]  # top of the chain


def test_acknowledgment_after_escalation_stops_the_town_deadline() -> None:
    case, fx = open_case(Category.SAFETY_HAZARD)
    dept_deadline = fx.schedule[0].id
    fx = lifecycle.on_deadline(case, "ack", dept_deadline, POLICY, at(121))
    town_deadline = fx.schedule[0].id
    fx = act(case, Action.ACKNOWLEDGE, DEPT, 125)
    ev = fx.events[0]
    assert isinstance(ev, CaseAcknowledged) and not ev.in_time
    assert town_deadline in fx.cancel


def test_acknowledged_deadline_firing_late_changes_nothing() -> None:
    case, fx = open_case()
    ack_id = fx.schedule[0].id
    act(case, Action.ACKNOWLEDGE, PROPERTY, 1)
    assert not lifecycle.on_deadline(case, "ack", ack_id, POLICY, at(61)).changed
    assert case.level == "community"


def test_missed_resolve_deadline_marks_the_case_overdue() -> None:
    case, _ = open_case()
    act(case, Action.ACKNOWLEDGE, PROPERTY, 1)
    rid = case.resolve_deadline or ""
    fx = lifecycle.on_deadline(case, "resolve", rid, POLICY, at(24 * 60 + 1))
    assert case.overdue and fx.breaches == [("routine", "resolve")]
    fx = act(case, Action.RESOLVE, PROPERTY, 24 * 60 + 5)
    ev = fx.events[0]
    assert isinstance(ev, CaseResolved) and not ev.in_time


def test_whistle_calls_departments_each_with_its_own_report_in_deadline() -> None:
    case, _ = open_case(Category.PUBLIC_AFFAIRS)
    assert case.tier == Tier.GENERAL
    fx = lifecycle.whistle(
        case, ["dept:justice", "dept:civil-affairs"], POLICY, at(10), by="s", reason="协调"
    )
    assert case.tier == Tier.MAJOR and case.whistled
    assert [e.to_unit for e in fx.events if isinstance(e, CaseEscalated)] == [
        "dept:justice",
        "dept:civil-affairs",
    ]
    assert all(isinstance(e, CaseEscalated) and e.trigger == "whistle" for e in fx.events)
    assert [d.payload["unit"] for d in fx.schedule] == ["dept:justice", "dept:civil-affairs"]
    assert TOWN in case.units
    act(case, Action.ACKNOWLEDGE, COMMUNITY, 11)
    # each department still reports in for itself after the case is acknowledged
    assert case.allowed_actions("dept:justice")[0] == "acknowledge"
    fx = act(case, Action.ACKNOWLEDGE, "dept:justice", 12)
    assert "acknowledge" not in case.allowed_actions("dept:justice")
    with pytest.raises(TransitionError):
        lifecycle.whistle(case, ["dept:justice"], POLICY, at(13))


def test_withdrawal_closes_and_cancels_every_deadline() -> None:
    case, fx = open_case()
    scheduled = {d.id for d in fx.schedule}
    fx = lifecycle.withdraw(case, at(5), "已自行解决")
    assert case.status == Status.CLOSED and case.close_reason == "withdrawn"
    assert set(fx.cancel) == scheduled
    assert lifecycle.withdraw(case, at(6)).events == []


def test_feedback_on_an_unresolved_case_is_only_recorded() -> None:
    case, _ = open_case()
    fx = lifecycle.give_feedback(case, Rating.DISSATISFIED, at(1), POLICY)
    assert case.status == Status.ROUTED and fx.events == []
    assert case.ratings[0]["rating"] == "dissatisfied"


def test_document_round_trip() -> None:
    case, _ = open_case(Category.SAFETY_HAZARD)
    doc = case.to_doc()
    assert doc["_id"] == "C-1" and doc["units"] == [DEPT, TOWN]
    assert Case.from_doc(doc) == case
