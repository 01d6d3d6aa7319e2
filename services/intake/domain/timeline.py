"""The resident-facing status and timeline of a request, derived from case and task events.

Pure rules: given a request's current state and one consumed event, what entry joins
the timeline and whether the status moves. Events that arrive in a state they cannot
move (a late ``case.resolved`` after a withdrawal, say) still join the timeline — they
happened — but leave the status alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tongxin.contracts.enums import Rating
from tongxin.contracts.events import (
    CaseAcknowledged,
    CaseClosed,
    CaseEscalated,
    CaseProgressed,
    CaseReopened,
    CaseResolved,
    CaseReturned,
    CaseRouted,
    Event,
    TaskAccepted,
    TaskCompleted,
    TaskDeclined,
    TaskExpired,
    TaskOffered,
    TaskUnmatched,
)


class Status(StrEnum):
    """Where a request stands, as the resident sees it."""

    SUBMITTED = "submitted"  # 已受理
    ROUTED = "routed"  # 已派单
    ACKNOWLEDGED = "acknowledged"  # 已接单
    IN_PROGRESS = "in_progress"  # 办理中
    RETURNED = "returned"  # 退单，重新派单中
    RESOLVED = "resolved"  # 已办结，待评价
    REOPENED = "reopened"  # 不满意，重新办理
    CLOSED = "closed"  # 已办结归档
    WITHDRAWN = "withdrawn"  # 已撤回


STATUS_NAMES_ZH: dict[Status, str] = {
    Status.SUBMITTED: "已受理",
    Status.ROUTED: "已派单",
    Status.ACKNOWLEDGED: "已接单",
    Status.IN_PROGRESS: "办理中",
    Status.RETURNED: "重新派单中",
    Status.RESOLVED: "已办结待评价",
    Status.REOPENED: "重新办理中",
    Status.CLOSED: "已办结",
    Status.WITHDRAWN: "已撤回",
}

# Not yet resolved: may be withdrawn, and new similar requests link to it.
OPEN: frozenset[Status] = frozenset(
    {
        Status.SUBMITTED,
        Status.ROUTED,
        Status.ACKNOWLEDGED,
        Status.IN_PROGRESS,
        Status.RETURNED,
        Status.REOPENED,
    }
)
TERMINAL: frozenset[Status] = frozenset({Status.CLOSED, Status.WITHDRAWN})

_WORKING = frozenset({Status.ROUTED, Status.ACKNOWLEDGED, Status.IN_PROGRESS, Status.REOPENED})

# event type -> the states it moves from, and where to
TRANSITIONS: dict[str, tuple[frozenset[Status], Status]] = {
    "case.routed": (frozenset({Status.SUBMITTED, Status.RETURNED}), Status.ROUTED),
    "case.acknowledged": (
        frozenset({Status.SUBMITTED, Status.ROUTED, Status.RETURNED, Status.REOPENED}),
        Status.ACKNOWLEDGED,
    ),
    "case.progressed": (
        frozenset({Status.SUBMITTED, Status.RETURNED, *_WORKING}) - {Status.IN_PROGRESS},
        Status.IN_PROGRESS,
    ),
    "case.resolved": (OPEN, Status.RESOLVED),
    "case.returned": (_WORKING, Status.RETURNED),
    "case.reopened": (frozenset({Status.RESOLVED, Status.CLOSED}), Status.REOPENED),
    "case.closed": (frozenset(Status) - {Status.WITHDRAWN, Status.CLOSED}, Status.CLOSED),
}

TIER_NOTES = {
    "routine": "已派至社区，即知即办",
    "general": "已派至社区，定期速办",
    "major": "已吹哨，相关部门报到办理",
    "special": "已由社工专人办理",
}

RATING_NAMES_ZH = {
    Rating.SATISFIED: "满意",
    Rating.BASICALLY_SATISFIED: "基本满意",
    Rating.DISSATISFIED: "不满意",
}


def can_transition(current: Status, event_type: str) -> Status | None:
    """The status ``event_type`` moves ``current`` to, or None when it does not move it."""
    rule = TRANSITIONS.get(event_type)
    if rule is None:
        return None
    sources, target = rule
    return target if current in sources else None


@dataclass(frozen=True, slots=True)
class State:
    """What the rules need to know about a request."""

    status: Status
    resolution_round: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """The effect of one event on one request."""

    entry: dict[str, Any]
    status: Status | None = None  # set when the status moves
    fields: dict[str, Any] = field(default_factory=dict)  # other fields to set

    @property
    def public_note(self) -> str:
        """A note safe for the public status topic: the template, never free text."""
        note: str = self.entry["note"]
        return note


def _name(unit: str | None, names: Mapping[str, str]) -> str:
    if not unit:
        return "承办单位"
    return names.get(unit, unit)


def apply_event(
    state: State,
    event: Event,
    *,
    event_id: str,
    at: datetime,
    unit_names: Mapping[str, str],
    feedback_window: timedelta,
) -> Change | None:
    """The timeline entry and status move for ``event``; None for events not about requests."""
    kind = type(event).event_type
    unit: str | None = getattr(event, "unit", None)
    detail: str | None = getattr(event, "note", None)
    public = True
    fields: dict[str, Any] = {}
    if isinstance(event, CaseRouted):
        unit = event.units[0] if event.units else None
        names = "、".join(_name(u, unit_names) for u in event.units)
        note = f"{TIER_NOTES.get(event.tier.value, '已派单')}（{names}）" if names else "已派单"
        fields = {
            "case_id": event.case_id,
            "tier": event.tier.value,
            "units": list(event.units),
            "acknowledge_by": event.acknowledge_by,
            "resolve_by": event.resolve_by,
            "rule": event.classification.rule,
        }
    elif isinstance(event, CaseAcknowledged):
        note = f"{_name(unit, unit_names)}已接单"
    elif isinstance(event, CaseProgressed):
        note = f"{_name(unit, unit_names)}正在办理"
    elif isinstance(event, CaseResolved):
        note = "已办结，请您对办理结果进行评价"
        fields = {
            "resolved_at": event.at,
            "awaiting_feedback": True,
            "resolution_round": state.resolution_round + 1,
            "feedback_due": at + feedback_window,
        }
    elif isinstance(event, CaseReturned):
        note = "承办单位已退回，正在重新派单"
        detail = event.reason if not detail else f"{event.reason}；{detail}"
    elif isinstance(event, CaseEscalated):
        note = f"已升级至{_name(event.to_unit, unit_names)}督办"
        fields = {"level": event.to_level, "escalated_to": event.to_unit}
        unit = event.to_unit
    elif isinstance(event, CaseReopened):
        note = "已根据您的评价重新办理"
        fields = {"awaiting_feedback": False}
    elif isinstance(event, CaseClosed):
        note = "已办结归档"
        fields = {"awaiting_feedback": False, "closed_at": event.at}
    elif isinstance(event, TaskOffered):
        note = "正在为您联系红马甲志愿者"
        unit = None
    elif isinstance(event, TaskAccepted):
        note = "红马甲志愿者已接受服务任务"
        unit = None
    elif isinstance(event, TaskDeclined | TaskExpired):
        note = "志愿者未能接单，正在匹配下一位"
        public = False
        detail = getattr(event, "reason", None)
        unit = None
    elif isinstance(event, TaskCompleted):
        note = f"红马甲志愿者已完成服务（{event.hours:g} 小时）"
        unit = None
    elif isinstance(event, TaskUnmatched):
        note = "暂未匹配到志愿者，社区将另行安排人员"
        unit = None
    else:
        return None
    target = can_transition(state.status, kind)
    if target is None and "awaiting_feedback" in fields and kind == "case.resolved":
        fields = {}  # a late resolution (withdrawn request) opens no feedback round
    entry: dict[str, Any] = {
        "at": at,
        "kind": kind,
        "status": target.value if target else None,
        "unit": unit,
        "unit_name": _name(unit, unit_names) if unit else None,
        "note": note,
        "detail": detail,
        "public": public,
        "event_id": event_id,
    }
    return Change(entry=entry, status=target, fields=fields)


def submitted_entry(at: datetime, *, duplicate_of: str | None = None) -> dict[str, Any]:
    """The first timeline entry of every request."""
    note = "诉求已受理"
    return {
        "at": at,
        "kind": "request.submitted",
        "status": Status.SUBMITTED.value,
        "unit": None,
        "unit_name": None,
        "note": note,
        "detail": f"与 {duplicate_of} 相似，已关联" if duplicate_of else None,
        "public": True,
        "event_id": None,
    }


def resident_timeline(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the resident sees: public entries in time order, without internal ids."""
    visible = [e for e in entries if e.get("public", True)]
    visible.sort(key=lambda e: e["at"])
    return [{k: v for k, v in e.items() if k not in ("event_id", "public")} for e in visible]


def staff_timeline(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What staff see: every entry in time order."""
    return sorted(entries, key=lambda e: e["at"])
