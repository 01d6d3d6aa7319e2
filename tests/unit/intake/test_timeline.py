"""Status transitions and timeline entries from case and task events (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.intake.domain.timeline import (
    OPEN,
    State,
    Status,
    apply_event,
    can_transition,
    resident_timeline,
)
from tongxin.contracts.events import (
    CareVisitOverdue,
    CaseAcknowledged,
    CaseClosed,
    CaseEscalated,
    CaseReopened,
    CaseResolved,
    CaseRouted,
    Event,
    RuleFired,
    TaskDeclined,
)

T = datetime(2025, 5, 1, 8, tzinfo=UTC)
NAMES = {"community:liyuan": "梨园社区", "town:yongbei": "永北镇党委"}
WINDOW = timedelta(days=7)


def apply(status: Status, event: Event, rnd: int = 0) -> Any:
    return apply_event(
        State(status, rnd),
        event,
        event_id="e1",
        at=T,
        unit_names=NAMES,
        feedback_window=WINDOW,
    )


def case(kind: type, **kw: Any) -> Any:
    return kind(request_id="R", case_id="C", unit="community:liyuan", at=T, **kw)


def routed() -> CaseRouted:
    return CaseRouted(
        request_id="R",
        case_id="C",
        tier="major",
        category="safety_hazard",
        community="community:liyuan",
        units=["community:liyuan", "dept:housing"],
        classification=RuleFired(rule="r", reason="x"),
        acknowledge_by=T,
        resolve_by=T + timedelta(days=15),
    )


def test_routed_records_case_tier_units_and_deadline() -> None:
    change = apply(Status.SUBMITTED, routed())
    assert change.status is Status.ROUTED
    assert change.fields["tier"] == "major" and change.fields["case_id"] == "C"
    assert change.fields["resolve_by"] == T + timedelta(days=15)
    assert "梨园社区" in change.entry["note"] and "dept:housing" in change.entry["note"]


def test_resolution_opens_a_feedback_round() -> None:
    change = apply(Status.IN_PROGRESS, case(CaseResolved), rnd=1)
    assert change.status is Status.RESOLVED
    assert change.fields["awaiting_feedback"] is True
    assert change.fields["resolution_round"] == 2
    assert change.fields["feedback_due"] == T + WINDOW


def test_late_resolution_of_a_withdrawn_request_is_recorded_but_moves_nothing() -> None:
    change = apply(Status.WITHDRAWN, case(CaseResolved))
    assert change.status is None and change.fields == {}
    assert change.entry["kind"] == "case.resolved" and change.entry["status"] is None


@pytest.mark.parametrize("status", sorted(Status))
def test_terminal_withdrawal_never_moves(status: Status) -> None:
    for kind in (
        "case.routed",
        "case.acknowledged",
        "case.progressed",
        "case.resolved",
        "case.returned",
        "case.reopened",
        "case.closed",
    ):
        assert can_transition(Status.WITHDRAWN, kind) is None
    assert (can_transition(status, "case.closed") is None) == (
        status in (Status.WITHDRAWN, Status.CLOSED)
    )


def test_second_acknowledgement_of_a_whistle_case_keeps_in_progress() -> None:
    assert can_transition(Status.IN_PROGRESS, "case.acknowledged") is None
    assert can_transition(Status.ROUTED, "case.acknowledged") is Status.ACKNOWLEDGED


def test_reopen_and_close() -> None:
    assert apply(Status.RESOLVED, case(CaseReopened)).status is Status.REOPENED
    closed = apply(Status.RESOLVED, case(CaseClosed, reason="satisfied"))
    assert closed.status is Status.CLOSED and closed.fields["awaiting_feedback"] is False


def test_escalation_names_the_next_level_without_moving_status() -> None:
    change = apply(
        Status.ROUTED,
        case(
            CaseEscalated,
            from_level="community",
            to_level="town",
            to_unit="town:yongbei",
            reason="missed",
            deadline=T,
        ),
    )
    assert change.status is None
    assert change.entry["note"] == "已升级至永北镇党委督办"
    assert change.fields == {"level": "town", "escalated_to": "town:yongbei"}


def test_declines_are_internal_and_hidden_from_the_resident() -> None:
    declined = TaskDeclined(
        request_id="R", task_id="T", case_id="C", volunteer_id="v", at=T, reason="busy"
    )
    change = apply(Status.ROUTED, declined)
    assert change.entry["public"] is False
    ack = apply(Status.ROUTED, case(CaseAcknowledged))
    shown = resident_timeline([change.entry, ack.entry])
    assert [e["kind"] for e in shown] == ["case.acknowledged"]
    assert "event_id" not in shown[0]


def test_care_visits_are_not_about_requests() -> None:
    overdue = CareVisitOverdue(
        request_id="care:1",
        recipient_id="1",
        visit_id="v",
        care_type="elderly_alone",
        community="community:liyuan",
        due_at=T,
    )
    assert apply(Status.SUBMITTED, overdue) is None


def test_open_statuses_are_exactly_the_unresolved_ones() -> None:
    assert Status.RESOLVED not in OPEN and Status.CLOSED not in OPEN
    assert Status.WITHDRAWN not in OPEN and Status.REOPENED in OPEN
