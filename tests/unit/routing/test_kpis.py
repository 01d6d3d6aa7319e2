"""KPI arithmetic on a known history of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.routing.domain import lifecycle
from services.routing.domain.classify import ClassifyInput, classify
from services.routing.domain.kpis import unit_stats
from services.routing.domain.lifecycle import Action, Case
from services.routing.domain.policy import Policy
from tongxin.contracts.enums import Category, Rating, Urgency
from tongxin.runtime.settings import REPO_ROOT

POLICY_FILE = REPO_ROOT / "deploy" / "policy" / "routing.json"

POLICY = Policy.load(POLICY_FILE)
T0 = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
PROPERTY, DEPT, TOWN = "station:liyuan:property", "dept:housing", "town:yongbei"


def new(n: int, category: Category, opened: datetime) -> Case:
    decision = classify(
        ClassifyInput(category, Urgency.NORMAL, False, "community:liyuan", "compound:jinyuan"),
        POLICY,
    )
    case, _ = lifecycle.open_case(
        case_id=f"C-{n}",
        request_id=f"YS-{n}",
        category=category,
        community="community:liyuan",
        compound="compound:jinyuan",
        decision=decision,
        policy=POLICY,
        now=opened,
    )
    return case


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def history() -> list[Case]:
    """Four routine cases for the property centre and one major case for housing."""
    # 1: acknowledged in time, resolved in time, satisfied
    c1 = new(1, Category.SANITATION, T0)
    lifecycle.act(c1, Action.ACKNOWLEDGE, PROPERTY, h(0.5), POLICY)
    lifecycle.act(c1, Action.RESOLVE, PROPERTY, h(5), POLICY)
    lifecycle.give_feedback(c1, Rating.SATISFIED, h(6), POLICY)
    # 2: acknowledged late, resolved late, dissatisfied
    c2 = new(2, Category.SANITATION, T0)
    lifecycle.act(c2, Action.ACKNOWLEDGE, PROPERTY, h(2), POLICY)
    lifecycle.act(c2, Action.RESOLVE, PROPERTY, h(30), POLICY)
    lifecycle.give_feedback(c2, Rating.DISSATISFIED, h(31), POLICY)
    # 3: acknowledged in time, still running (resolve deadline not yet passed at h(10))
    c3 = new(3, Category.PROPERTY_SERVICE, h(1))
    lifecycle.act(c3, Action.ACKNOWLEDGE, PROPERTY, h(1.5), POLICY)
    # 4: never acknowledged (deadline passed), basically satisfied rating never given
    c4 = new(4, Category.PUBLIC_FACILITIES, h(2))
    # 5: major — housing reports in in time and resolves in time, basically satisfied
    c5 = new(5, Category.SAFETY_HAZARD, h(3))
    lifecycle.act(c5, Action.ACKNOWLEDGE, DEPT, h(4), POLICY)
    lifecycle.act(c5, Action.RESOLVE, DEPT, h(8), POLICY)
    lifecycle.give_feedback(c5, Rating.BASICALLY_SATISFIED, h(9), POLICY)
    return [c1, c2, c3, c4, c5]


def test_rates_per_unit_and_overall() -> None:
    now = h(40)  # after every routine deadline but c3's and c4's resolve (h(25), h(26))
    stats = unit_stats(history(), now)
    prop = stats["units"][PROPERTY]
    # ack obligations: c1 in time, c2 late, c2 again after reopening (due h(32), missed),
    # c3 in time, c4 missed → 2/5
    assert prop["counts"]["acknowledge_due"] == 5 and prop["response_rate"] == 0.4
    # resolve: c1 in time; c2 reopened runs on a fresh deadline (h(55)): not judged yet;
    # c3 and c4 overdue at h(40) (deadlines h(25) and h(26)) → 1/3
    assert prop["counts"]["resolve_due"] == 3
    assert round(prop["resolution_rate"], 2) == 0.33
    # ratings: satisfied, dissatisfied → 1/2
    assert prop["satisfaction_rate"] == 0.5
    assert prop["whistle_rate"] == 0.0 and prop["cases"] == 4
    dept = stats["units"][DEPT]
    assert dept["response_rate"] == 1.0 and dept["resolution_rate"] == 1.0
    assert dept["satisfaction_rate"] == 1.0 and dept["whistle_rate"] == 1.0
    town = stats["units"][TOWN]
    assert town["response_rate"] is None and town["whistle_rate"] == 1.0
    overall = stats["overall"]
    assert overall["cases"] == 5
    assert overall["response_rate"] == 0.5  # 3 of 6 obligations
    assert overall["resolution_rate"] == 0.5  # c1, c5 of c1, c3, c4, c5
    assert overall["satisfaction_rate"] == round(2 / 3, 4)
    assert overall["whistle_rate"] == 0.2


def test_undecided_obligations_do_not_count_yet() -> None:
    stats = unit_stats(history(), h(2.5))
    prop = stats["units"][PROPERTY]
    # at h(2.5): c4's acknowledge deadline (h(3)) has not passed, nor have the resolve
    # deadlines of c3 and c4: only the resolved cases are judged
    assert prop["counts"]["acknowledge_due"] == 3
    assert prop["counts"]["resolve_due"] == 1 and prop["resolution_rate"] == 1.0


def test_window_selects_cases_by_opening_time() -> None:
    stats = unit_stats(history(), h(40), since=h(1), until=h(3))
    assert stats["overall"]["cases"] == 2  # c3 and c4
    assert stats["overall"]["whistle_rate"] == 0.0


def test_empty_history_has_no_rates() -> None:
    overall = unit_stats([], T0)["overall"]
    assert overall["cases"] == 0
    assert all(overall[k] is None for k in ("response_rate", "resolution_rate"))
