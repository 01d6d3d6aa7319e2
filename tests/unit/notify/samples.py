"""One valid sample of every event notify consumes (contract models, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tongxin.contracts.events import (
    CareVisitOverdue,
    CaseAcknowledged,
    CaseClosed,
    CaseEscalated,
    CaseProgressed,
    CaseReopened,
    CaseResolved,
    CaseReturned,
    CaseRouted,
    Event,
    RequestFeedbackGiven,
    RequestSubmitted,
    RequestWithdrawn,
    Submitter,
    TaskAccepted,
    TaskCompleted,
    TaskDeclined,
    TaskExpired,
    TaskOffered,
    TaskUnmatched,
)

NOW = datetime(2025, 5, 1, 6, 0, tzinfo=UTC)  # 14:00 in Asia/Shanghai
RID, CID = "YS-20250501-0001", "CASE-1"
CASE: dict[str, Any] = {
    "case_id": CID,
    "request_id": RID,
    "units": ["community:liyuan", "dept:civil-affairs"],
    "community": "community:liyuan",
    "tier": "major",
}
CONTACT: dict[str, Any] = {"name": "李建华", "phone": "13987654321", "urgency": "normal"}


def samples() -> list[Event]:
    """Every consumed event type, filled in."""
    later = NOW + timedelta(hours=2)
    common = {"request_id": RID, "case_id": CID, "at": NOW}
    task = {
        "request_id": RID,
        "case_id": CID,
        "task_id": "T-1",
        "volunteer_id": "vol:001",
        "at": NOW,
    }
    return [
        RequestSubmitted(
            request_id=RID,
            channel="app",
            category="elderly_care",
            title="独居老人助餐",
            description="需要志愿者帮忙送餐",
            community="community:liyuan",
            compound="compound:jinyuan",
            submitter=Submitter(name="李建华", phone="13987654321"),
            submitted_at=NOW,
        ),
        RequestFeedbackGiven(request_id=RID, case_id=CID, rating="dissatisfied", given_at=NOW),
        RequestWithdrawn(request_id=RID, reason="已自行解决", withdrawn_at=NOW),
        CaseRouted(
            request_id=RID,
            case_id=CID,
            tier="major",
            category="elderly_care",
            community="community:liyuan",
            units=["community:liyuan", "dept:civil-affairs"],
            classification={"rule": "cross_department", "reason": "跨部门事项，吹哨报到"},
            acknowledge_by=later,
            resolve_by=later + timedelta(days=15),
            needs_volunteers=True,
            skills=["elder_care"],
            deliberation=True,
        ),
        CaseAcknowledged(**common, unit="community:liyuan"),
        CaseProgressed(**common, unit="community:liyuan", note="已上门"),
        CaseResolved(**common, unit="community:liyuan", note="已安排助餐"),
        CaseReturned(**common, unit="dept:civil-affairs", reason="不属本部门职责"),
        CaseEscalated(
            **common,
            from_level="community",
            to_level="town",
            to_unit="town:yongbei",
            reason="报到超时",
            deadline=later,
        ),
        CaseReopened(**common, reason="不满意"),
        CaseClosed(**common, reason="satisfied"),
        TaskOffered(
            request_id=RID,
            case_id=CID,
            task_id="T-1",
            volunteer_id="vol:001",
            volunteer_name="李红梅",
            skill="elder_care",
            accept_by=later,
        ),
        TaskAccepted(**task),
        TaskDeclined(**task, reason="没空"),
        TaskExpired(**task),
        TaskCompleted(**task, hours=2.5, note="送餐完成"),
        TaskUnmatched(
            request_id=RID, case_id=CID, task_id="T-1", skills=["elder_care"], reason="无空闲志愿者"
        ),
        CareVisitOverdue(
            request_id="care:cr-1",
            recipient_id="cr-1",
            visit_id="v-1",
            care_type="elderly_alone",
            community="community:liyuan",
            due_at=NOW,
            volunteer_ids=["vol:001"],
        ),
    ]
