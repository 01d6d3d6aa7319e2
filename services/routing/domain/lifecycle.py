"""A case's life: assignments, transitions, deadlines and escalation — pure rules, no I/O.

Every operation mutates a :class:`Case` and returns :class:`Effects` (events to emit,
deadlines to schedule or cancel, metric observations); the caller applies them in one
transaction. Bad operations raise :class:`TransitionError` (409, naming the allowed
actions) or :class:`NotAssigned` (403).

States: routed → acknowledged → in_progress → resolved → closed, or resolved → reopened
(dissatisfied) → acknowledged …; routed/acknowledged/in_progress/reopened → returned (退单)
→ routed again when the town committee reassigns. Any state but closed → closed when the
resident withdraws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.routing.domain.classify import Decision
from services.routing.domain.policy import Policy
from tongxin.contracts.enums import Category, Rating, Skill, Tier
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
    RuleFired,
)


class Status(StrEnum):
    """Where a case is in its life."""

    ROUTED = "routed"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    RETURNED = "returned"
    REOPENED = "reopened"
    CLOSED = "closed"


OPEN_STATES: tuple[Status, ...] = (
    Status.ROUTED,
    Status.ACKNOWLEDGED,
    Status.IN_PROGRESS,
    Status.RETURNED,
    Status.REOPENED,
)


class Action(StrEnum):
    """What a unit does to a case (HTTP or the case-command topic)."""

    ACKNOWLEDGE = "acknowledge"
    PROGRESS = "progress"
    RESOLVE = "resolve"
    RETURN = "return"


# Case-level transitions; acknowledge in acknowledged/in_progress is a unit's own
# report-in (a whistled department) and is checked per unit.
TRANSITIONS: dict[Status, tuple[Action, ...]] = {
    Status.ROUTED: (Action.ACKNOWLEDGE, Action.RETURN),
    Status.REOPENED: (Action.ACKNOWLEDGE, Action.RETURN),
    Status.ACKNOWLEDGED: (Action.ACKNOWLEDGE, Action.PROGRESS, Action.RESOLVE, Action.RETURN),
    Status.IN_PROGRESS: (Action.ACKNOWLEDGE, Action.PROGRESS, Action.RESOLVE, Action.RETURN),
    Status.RESOLVED: (),
    Status.RETURNED: (),
    Status.CLOSED: (),
}

LEAD, WHISTLED, SUPPORT, COORDINATOR, ESCALATION = (
    "lead",
    "whistled",
    "support",
    "coordinator",
    "escalation",
)

ACK, RESOLVE_DUE, FEEDBACK_DUE = "ack", "resolve", "feedback"


class TransitionError(Exception):
    """The action is not allowed in the case's current state (HTTP 409)."""

    def __init__(self, message: str, allowed: list[str], status: str) -> None:
        super().__init__(message)
        self.allowed = allowed
        self.status = status


class NotAssigned(Exception):
    """The unit is not assigned to the case (HTTP 403; DLQ for a command)."""


@dataclass
class Assignment:
    """One unit's part in a case; a deadline when it must acknowledge (report in)."""

    unit: str
    role: str
    level: str
    assigned_at: datetime
    acknowledge_by: datetime | None = None
    acknowledged_at: datetime | None = None
    in_time: bool | None = None
    deadline_id: str | None = None
    breached: bool = False
    active: bool = True

    @property
    def pending(self) -> bool:
        """Must still acknowledge and has a running deadline."""
        return self.active and self.acknowledged_at is None and self.deadline_id is not None


@dataclass
class DeadlineSpec:
    """A durable deadline to schedule."""

    id: str
    kind: str
    due_at: datetime
    payload: dict[str, Any]


@dataclass
class Effects:
    """What an operation asks the caller to do in the same transaction."""

    events: list[Event] = field(default_factory=list)
    schedule: list[DeadlineSpec] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    # metric observations, applied after commit
    breaches: list[tuple[str, str]] = field(default_factory=list)  # (tier, level)
    report_in_s: list[tuple[str, float]] = field(default_factory=list)  # (tier, seconds)

    @property
    def changed(self) -> bool:
        """Whether the case needs writing."""
        return bool(self.events or self.schedule or self.cancel or self.breaches)


@dataclass
class Case:
    """Routing's unit of work for one request."""

    id: str
    request_id: str
    tier: Tier
    category: Category
    community: str
    compound: str | None
    classification: dict[str, Any]
    status: Status
    opened_at: datetime
    acknowledge_by: datetime
    resolve_by: datetime
    accountable_unit: str
    assignments: list[Assignment]
    level: str = "community"
    deliberation: bool = False
    needs_volunteers: bool = False
    skills: list[str] = field(default_factory=list)
    whistled: bool = False
    revision: int = 0
    seq: int = 0
    version: int = 0
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_in_time: bool | None = None
    overdue: bool = False
    closed_at: datetime | None = None
    close_reason: str | None = None
    reopen_count: int = 0
    resolve_deadline: str | None = None
    feedback_deadline: str | None = None
    returned: dict[str, Any] | None = None
    ratings: list[dict[str, Any]] = field(default_factory=list)
    meeting_decision: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    # --- views -----------------------------------------------------------------------

    @property
    def units(self) -> list[str]:
        """Units currently assigned (who may see and act on the case)."""
        out: list[str] = []
        for a in self.assignments:
            if a.active and a.unit not in out:
                out.append(a.unit)
        return out

    def assignment(self, unit: str) -> Assignment | None:
        """The unit's active assignment."""
        for a in self.assignments:
            if a.active and a.unit == unit:
                return a
        return None

    def allowed_actions(self, unit: str | None = None) -> list[str]:
        """Actions possible now (for ``unit``, when given)."""
        actions = list(TRANSITIONS[self.status])
        if unit is not None:
            a = self.assignment(unit)
            if a is None:
                return []
            if a.acknowledged_at is not None or (
                self.status not in (Status.ROUTED, Status.REOPENED) and a.acknowledge_by is None
            ):
                actions = [x for x in actions if x != Action.ACKNOWLEDGE]
            if a.level != "community":
                actions = [x for x in actions if x != Action.RETURN]
        return [a.value for a in actions]

    # --- persistence shape -------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """The database document (``_id`` is the case id; ``units`` is indexed)."""
        doc = asdict(self)
        doc["_id"] = doc.pop("id")
        doc["tier"] = self.tier.value
        doc["category"] = self.category.value
        doc["status"] = self.status.value
        doc["units"] = self.units
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Case:
        """Read a stored case."""
        d = {k: v for k, v in doc.items() if k in _FIELDS}
        d["id"] = doc["_id"]
        d["tier"] = Tier(doc["tier"])
        d["category"] = Category(doc["category"])
        d["status"] = Status(doc["status"])
        d["assignments"] = [Assignment(**a) for a in doc.get("assignments", [])]
        return cls(**d)

    # --- helpers -----------------------------------------------------------------------

    def _deadline_id(self, kind: str) -> str:
        self.seq += 1
        return f"{kind}:{self.id}:{self.seq}"

    def _log(self, at: datetime, event: str, **extra: Any) -> None:
        self.history.append({"at": at, "event": event, **{k: v for k, v in extra.items() if v}})


_FIELDS = set(Case.__dataclass_fields__)


def _ack_deadline(case: Case, a: Assignment, due: datetime, fx: Effects) -> None:
    a.acknowledge_by = due
    a.acknowledged_at = None
    a.in_time = None
    a.deadline_id = case._deadline_id(ACK)
    fx.schedule.append(DeadlineSpec(a.deadline_id, ACK, due, {"unit": a.unit}))


def _cancel(a: Assignment, fx: Effects) -> None:
    if a.pending and a.deadline_id:
        fx.cancel.append(a.deadline_id)
        a.deadline_id = None


def _cancel_all(case: Case, fx: Effects, *, resolve: bool = True) -> None:
    for a in case.assignments:
        _cancel(a, fx)
    if resolve and case.resolve_deadline:
        fx.cancel.append(case.resolve_deadline)
        case.resolve_deadline = None
    if case.feedback_deadline:
        fx.cancel.append(case.feedback_deadline)
        case.feedback_deadline = None


def _schedule_resolve(case: Case, policy: Policy, now: datetime, fx: Effects) -> None:
    if case.resolve_deadline:
        fx.cancel.append(case.resolve_deadline)
    case.resolve_by = now + policy.deadlines[case.tier].resolve
    case.overdue = False
    case.resolve_deadline = case._deadline_id(RESOLVE_DUE)
    fx.schedule.append(DeadlineSpec(case.resolve_deadline, RESOLVE_DUE, case.resolve_by, {}))


def _assign_units(
    case: Case, units: list[str], policy: Policy, now: datetime, fx: Effects, *, whistle: bool
) -> None:
    """Assignments of a fresh routing: lead (or whistled departments), support, coordinator."""
    ack = policy.deadlines[case.tier].acknowledge
    town = policy.town_unit
    first = True
    for unit in units:
        if unit == town:
            case.assignments.append(Assignment(unit, COORDINATOR, "town", now))
            continue
        if whistle and unit.startswith("dept:"):
            a = Assignment(unit, WHISTLED, "community", now)
        elif first:
            a = Assignment(unit, LEAD, "community", now)
        else:
            case.assignments.append(Assignment(unit, SUPPORT, "community", now))
            continue
        if first:
            case.accountable_unit = unit
            first = False
        _ack_deadline(case, a, now + ack, fx)
        case.assignments.append(a)
    case.acknowledge_by = now + ack


def routed_event(case: Case, rule: RuleFired, needs_volunteers: bool) -> CaseRouted:
    """The ``case.routed`` of the case as it stands."""
    return CaseRouted(
        request_id=case.request_id,
        case_id=case.id,
        tier=case.tier,
        category=case.category,
        community=case.community,
        compound=case.compound,
        units=case.units,
        classification=rule,
        acknowledge_by=case.acknowledge_by,
        resolve_by=case.resolve_by,
        needs_volunteers=needs_volunteers,
        skills=[Skill(s) for s in case.skills] if needs_volunteers else [],
        deliberation=case.deliberation,
        revision=case.revision,
        accountable_unit=case.accountable_unit,
    )


def open_case(
    *,
    case_id: str,
    request_id: str,
    category: Category,
    community: str,
    compound: str | None,
    decision: Decision,
    policy: Policy,
    now: datetime,
) -> tuple[Case, Effects]:
    """Open a case from a classification decision: assignments, deadlines, ``case.routed``."""
    fx = Effects()
    rule = RuleFired(rule=decision.rule, reason=decision.reason, inputs=decision.inputs)
    case = Case(
        id=case_id,
        request_id=request_id,
        tier=decision.tier,
        category=category,
        community=community,
        compound=compound,
        classification=rule.model_dump(mode="json"),
        status=Status.ROUTED,
        opened_at=now,
        acknowledge_by=now,
        resolve_by=now,
        accountable_unit=decision.units[0],
        assignments=[],
        deliberation=decision.deliberation,
        needs_volunteers=decision.needs_volunteers,
        skills=[s.value for s in decision.skills],
        whistled=decision.tier == Tier.MAJOR,
    )
    _assign_units(case, decision.units, policy, now, fx, whistle=decision.tier == Tier.MAJOR)
    _schedule_resolve(case, policy, now, fx)
    event = routed_event(case, rule, decision.needs_volunteers)
    fx.events.append(event)
    case._log(now, "case.routed", units=case.units, rule=decision.rule)
    return case, fx


def act(
    case: Case,
    action: Action,
    unit: str,
    now: datetime,
    policy: Policy,
    *,
    by: str | None = None,
    note: str | None = None,
    reason: str | None = None,
) -> Effects:
    """A unit acknowledges, reports progress, resolves or returns the case."""
    a = case.assignment(unit)
    if a is None:
        raise NotAssigned(f"unit {unit} is not assigned to case {case.id}")
    allowed = case.allowed_actions(unit)
    if action.value not in allowed:
        what = (
            f"{unit} has already acknowledged"
            if action == Action.ACKNOWLEDGE and a.acknowledged_at is not None
            else f"cannot {action.value} a case that is {case.status.value}"
        )
        raise TransitionError(what, allowed, case.status.value)
    fx = Effects()
    common: dict[str, Any] = {
        "request_id": case.request_id,
        "case_id": case.id,
        "unit": unit,
        "by": by,
        "note": note,
        "at": now,
    }
    if action == Action.ACKNOWLEDGE:
        in_time = a.acknowledge_by is None or now <= a.acknowledge_by
        if a.acknowledge_by is not None:
            fx.report_in_s.append((case.tier.value, (now - a.assigned_at).total_seconds()))
        _cancel(a, fx)
        a.acknowledged_at, a.in_time = now, in_time
        if case.status in (Status.ROUTED, Status.REOPENED):
            case.status = Status.ACKNOWLEDGED
            case.acknowledged_at = now
            # the case has a response: deadlines that chased one stop (whistled
            # departments still report in, each for itself)
            for other in case.assignments:
                if other.role != WHISTLED:
                    _cancel(other, fx)
        fx.events.append(CaseAcknowledged(**common, in_time=in_time))
    elif action == Action.PROGRESS:
        case.status = Status.IN_PROGRESS
        fx.events.append(CaseProgressed(**common))
    elif action == Action.RESOLVE:
        case.status = Status.RESOLVED
        case.resolved_at = now
        case.resolved_in_time = now <= case.resolve_by
        _cancel_all(case, fx)
        schedule_feedback(case, policy, now, fx)
        fx.events.append(CaseResolved(**common, in_time=case.resolved_in_time))
    elif action == Action.RETURN:
        if not reason:
            raise TransitionError(
                "a return needs a reason", case.allowed_actions(unit), case.status.value
            )
        case.status = Status.RETURNED
        case.returned = {"unit": unit, "reason": reason, "at": now, "by": by}
        # the first receiver stays accountable (its resolve deadline runs on) until
        # the town committee reassigns; the town now has a deadline to do that
        _cancel_all(case, fx, resolve=False)
        town_deadline_for_return(case, policy, now, fx)
        fx.events.append(CaseReturned(**common, reason=reason))
    case._log(now, fx.events[-1].event_type, unit=unit, by=by, note=note or reason)
    return fx


def town_deadline_for_return(case: Case, policy: Policy, now: datetime, fx: Effects) -> None:
    """After a return the town committee must reassign within its escalation window."""
    town = policy.escalation[1]
    assert town.unit is not None
    a = case.assignment(town.unit)
    if a is None:
        a = Assignment(town.unit, COORDINATOR, town.level, now)
        case.assignments.append(a)
    a.assigned_at = now
    _ack_deadline(case, a, now + town.acknowledge, fx)


def whistle(
    case: Case,
    departments: list[str],
    policy: Policy,
    now: datetime,
    *,
    by: str | None = None,
    reason: str | None = None,
) -> Effects:
    """Staff blow the whistle: each department must report in before its own deadline."""
    if case.status in (Status.RESOLVED, Status.CLOSED):
        raise TransitionError(
            f"cannot whistle a case that is {case.status.value}", [], case.status.value
        )
    new = [d for d in dict.fromkeys(departments) if case.assignment(d) is None]
    if not new:
        raise TransitionError(
            "every named department is already on the case",
            case.allowed_actions(),
            case.status.value,
        )
    fx = Effects()
    if case.tier != Tier.MAJOR:
        case.tier = Tier.MAJOR
    case.whistled = True
    report_in = policy.deadlines[Tier.MAJOR].acknowledge
    town = policy.town_unit
    if case.assignment(town) is None:
        case.assignments.append(Assignment(town, COORDINATOR, "town", now))
    for dept in new:
        a = Assignment(dept, WHISTLED, "community", now)
        _ack_deadline(case, a, now + report_in, fx)
        case.assignments.append(a)
        fx.events.append(
            CaseEscalated(
                request_id=case.request_id,
                case_id=case.id,
                unit=dept,
                by=by,
                note=reason,
                at=now,
                from_level=case.level,
                to_level="department",
                to_unit=dept,
                reason=reason or "吹哨报到：请于时限内报到",
                deadline=now + report_in,
                trigger="whistle",
            )
        )
    case._log(now, "case.whistled", units=new, by=by, note=reason)
    return fx


def reassign(
    case: Case,
    units: list[str],
    policy: Policy,
    now: datetime,
    *,
    by: str | None = None,
    note: str | None = None,
    rule: str = "reassigned",
    reason: str = "镇党委重新派单",
    tier: Tier | None = None,
) -> Effects:
    """The town committee (or a joint meeting) dispatches the case to new units."""
    if case.status in (Status.RESOLVED, Status.CLOSED):
        raise TransitionError(
            f"cannot reassign a case that is {case.status.value}", [], case.status.value
        )
    fx = Effects()
    previous = case.units
    for a in case.assignments:
        if a.pending and a.level != "community" and a.acknowledge_by is not None:
            # the town (or county) answered the return or escalation by reassigning
            a.in_time = now <= a.acknowledge_by
            _cancel(a, fx)
            a.acknowledged_at = now
        _cancel(a, fx)
        a.active = False
    if tier is not None:
        case.tier = tier
    case.revision += 1
    case.status = Status.ROUTED
    case.level = "community"
    case.returned = None
    case.acknowledged_at = None
    whistle_it = case.tier == Tier.MAJOR
    _assign_units(case, units, policy, now, fx, whistle=whistle_it)
    if case.assignment(policy.town_unit) is None:
        case.assignments.append(Assignment(policy.town_unit, COORDINATOR, "town", now))
    _schedule_resolve(case, policy, now, fx)
    fired = RuleFired(
        rule=rule,
        reason=reason,
        inputs={"previous_units": previous, "units": units, "by": by, "note": note},
    )
    case.classification = fired.model_dump(mode="json")
    # volunteers were already asked for at the first routing: a revision does not ask again
    fx.events.append(routed_event(case, fired, needs_volunteers=False))
    case._log(now, "case.routed", units=case.units, rule=rule, by=by, note=note)
    return fx


def give_feedback(
    case: Case, rating: Rating, now: datetime, policy: Policy, comment: str | None = None
) -> Effects:
    """The resident's rating: satisfied/basically → closed, dissatisfied → reopened (回访)."""
    fx = Effects()
    case.ratings.append({"rating": rating.value, "at": now, "unit": case.accountable_unit})
    case._log(now, "feedback", note=rating.value)
    if case.status != Status.RESOLVED:
        return fx  # recorded for the KPIs; a rating changes only a resolved case
    base: dict[str, Any] = {
        "request_id": case.request_id,
        "case_id": case.id,
        "unit": case.accountable_unit,
        "at": now,
        "note": comment,
    }
    _cancel_all(case, fx)
    if rating == Rating.DISSATISFIED:
        case.status = Status.REOPENED
        case.reopen_count += 1
        case.resolved_at = None
        case.resolved_in_time = None
        old = case.assignment(case.accountable_unit)
        if old is not None:
            # a fresh obligation; the first one stays in the record for the KPIs
            old.active = False
            lead = Assignment(old.unit, old.role, old.level, now)
            case.assignments.append(lead)
            _ack_deadline(case, lead, now + policy.deadlines[case.tier].acknowledge, fx)
        case.acknowledge_by = now + policy.deadlines[case.tier].acknowledge
        _schedule_resolve(case, policy, now, fx)
        fx.events.append(CaseReopened(**base, reason=comment or "群众不满意，重新办理"))
    else:
        _close(case, rating.value, now, fx, base)
    return fx


def _close(case: Case, reason: str, now: datetime, fx: Effects, base: dict[str, Any]) -> None:
    case.status = Status.CLOSED
    case.closed_at = now
    case.close_reason = reason
    _cancel_all(case, fx)
    fx.events.append(CaseClosed(**base, reason=reason))
    case._log(now, "case.closed", note=reason)


def withdraw(case: Case, now: datetime, reason: str | None = None) -> Effects:
    """The resident withdrew the request: the case closes (nothing to do when closed)."""
    fx = Effects()
    if case.status == Status.CLOSED:
        return fx
    base: dict[str, Any] = {
        "request_id": case.request_id,
        "case_id": case.id,
        "at": now,
        "note": reason,
    }
    _close(case, "withdrawn", now, fx, base)
    return fx


def on_deadline(case: Case, kind: str, deadline_id: str, policy: Policy, now: datetime) -> Effects:
    """A durable deadline fell due; stale deadlines (already answered) change nothing."""
    fx = Effects()
    if kind == ACK:
        a = next((x for x in case.assignments if x.deadline_id == deadline_id and x.pending), None)
        if a is None or case.status in (Status.RESOLVED, Status.CLOSED):
            return fx
        a.breached = True
        a.deadline_id = None
        fx.breaches.append((case.tier.value, a.level))
        here = policy.level_index(a.level)
        current = policy.level_index(case.level)
        if here < current or here + 1 >= len(policy.escalation):
            case._log(now, "deadline.missed", unit=a.unit, note=f"level {a.level}")
            return fx
        nxt = policy.escalation[here + 1]
        assert nxt.unit is not None
        target = case.assignment(nxt.unit)
        if target is None:
            target = Assignment(nxt.unit, ESCALATION, nxt.level, now)
            case.assignments.append(target)
        else:
            target.role = ESCALATION
            target.level = nxt.level
        target.assigned_at = now
        _ack_deadline(case, target, now + nxt.acknowledge, fx)
        from_level = case.level if here <= current else a.level
        case.level = nxt.level
        reason = f"{a.unit} 未在 {a.acknowledge_by:%Y-%m-%d %H:%M:%S} 前响应，升级至{nxt.level}"
        fx.events.append(
            CaseEscalated(
                request_id=case.request_id,
                case_id=case.id,
                unit=a.unit,
                at=now,
                from_level=from_level,
                to_level=nxt.level,
                to_unit=nxt.unit,
                reason=reason,
                deadline=now + nxt.acknowledge,
                trigger="deadline_missed",
            )
        )
        case._log(now, "case.escalated", unit=nxt.unit, note=reason)
    elif kind == RESOLVE_DUE:
        if case.resolve_deadline != deadline_id or case.status in (
            Status.RESOLVED,
            Status.CLOSED,
        ):
            return fx
        case.resolve_deadline = None
        case.overdue = True
        fx.breaches.append((case.tier.value, "resolve"))
        case._log(now, "deadline.missed", note="resolve overdue 超期未办结")
    elif kind == FEEDBACK_DUE:
        if case.feedback_deadline != deadline_id or case.status != Status.RESOLVED:
            return fx
        case.feedback_deadline = None
        base: dict[str, Any] = {
            "request_id": case.request_id,
            "case_id": case.id,
            "unit": case.accountable_unit,
            "at": now,
        }
        _close(case, "no_feedback", now, fx, base)
    return fx


def schedule_feedback(case: Case, policy: Policy, now: datetime, fx: Effects) -> None:
    """After resolution the resident has ``feedback_window`` to rate; then the case closes."""
    case.feedback_deadline = case._deadline_id(FEEDBACK_DUE)
    fx.schedule.append(
        DeadlineSpec(case.feedback_deadline, FEEDBACK_DUE, now + policy.feedback_window, {})
    )


def remaining(due: datetime, now: datetime) -> timedelta:
    """Time left before ``due`` (negative when overdue)."""
    return due - now
