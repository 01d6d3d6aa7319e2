"""The task walk's rules: who may do what to a task in which state (no I/O).

offered → accepted → completed, or offered → (declined | expired) → offered to the next
candidate … → unmatched when nobody is left. A case that no longer needs help cancels a
task that is still being offered. :class:`Task` is the stored aggregate and makes each
step of the walk on itself, returning the event it publishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.volunteer.domain.matching import MatchResult, Need
from services.volunteer.domain.refusals import Conflict, Forbidden, Rejected
from tongxin.contracts.enums import Skill
from tongxin.contracts.events import (
    Event,
    TaskAccepted,
    TaskCompleted,
    TaskDeclined,
    TaskExpired,
    TaskOffered,
    TaskUnmatched,
)


class TaskStatus(StrEnum):
    """Where a task is in its walk."""

    OFFERED = "offered"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    UNMATCHED = "unmatched"
    CANCELLED = "cancelled"


OPEN_STATES = (TaskStatus.OFFERED, TaskStatus.ACCEPTED)


class Action(StrEnum):
    """What a volunteer does to a task."""

    ACCEPT = "accept"
    DECLINE = "decline"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an action is refused: HTTP status, stable code, message."""

    status: int
    code: str
    message: str

    def error(self) -> Rejected:
        """The refusal as the rules' exception (403: forbidden, else a conflict)."""
        kind = Forbidden if self.status == 403 else Conflict
        return kind(self.code, self.message)


def check_action(
    action: Action,
    *,
    status: str,
    assignee: str | None,
    actor: str,
    actor_is_staff: bool,
    accept_by: datetime | None,
    now: datetime,
    offered_before: bool = False,
) -> Refusal | None:
    """None when ``actor`` may perform ``action`` now; otherwise the refusal.

    ``offered_before``: the task was offered to ``actor`` earlier (declined or expired), so
    an answer now is a conflict (409), not someone else's task (403).
    """
    if not actor_is_staff and assignee != actor:
        if offered_before:
            return Refusal(409, "offer_closed", "Your offer of this task ended (declined/expired).")
        return Refusal(403, "not_your_task", "This task is not offered to or held by you.")
    if actor_is_staff and action is not Action.COMPLETE:
        return Refusal(403, "forbidden", "Only the volunteer the task is offered to may answer.")
    if action in (Action.ACCEPT, Action.DECLINE):
        if status != TaskStatus.OFFERED:
            return Refusal(409, "task_not_offered", f"The task is {status}, not offered.")
        if accept_by is not None and now > accept_by:
            return Refusal(409, "offer_expired", "The accept deadline of this offer has passed.")
        return None
    if status != TaskStatus.ACCEPTED:
        return Refusal(409, "task_not_accepted", f"The task is {status}; accept it first.")
    return None


# --- the task, as stored ---------------------------------------------------------------------


def task_id_for(case_id: str) -> str:
    """One task per case; its id derives from the case's."""
    return f"T-{case_id.removeprefix('C-')}"


def offer_deadline_id(task_id: str, attempt: int) -> str:
    """The accept deadline of one offer."""
    return f"offer:{task_id}:{attempt}"


@dataclass
class Task:
    """A case's volunteer task and its walk: every offer with its scores and outcome.

    ``version`` counts the stored writes; a write is conditional on the version read.
    """

    id: str
    case_id: str
    request_id: str
    tier: str
    category: str
    skills: list[str]
    community: str
    compound: str | None
    lat: float | None
    lng: float | None
    need_start: datetime
    need_end: datetime
    created_at: datetime
    updated_at: datetime
    # until the first match decides, a new task counts as unmatched
    status: TaskStatus = TaskStatus.UNMATCHED
    kind: str = "case"
    attempt: int = 0
    tried: list[str] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    offer_outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    volunteer_id: str | None = None
    volunteer_name: str | None = None
    skill: str | None = None
    accept_by: datetime | None = None
    scores: dict[str, float] = field(default_factory=dict)
    ranking: list[dict[str, Any]] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    unmatched_reason: str | None = None
    accepted_at: datetime | None = None
    completed_at: datetime | None = None
    hours: float | None = None
    note: str | None = None
    completed_by: str | None = None
    cancelled_reason: str | None = None
    case_status: str | None = None
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        """The database document (``_id`` is the task id)."""
        doc = asdict(self)
        doc["_id"] = doc.pop("id")
        doc["status"] = self.status.value
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Task:
        """Read a stored task."""
        d = {k: v for k, v in doc.items() if k in _TASK_FIELDS}
        d["id"] = doc["_id"]
        d["status"] = TaskStatus(doc["status"])
        d["version"] = int(doc.get("version") or 0)
        return cls(**d)

    # --- views -------------------------------------------------------------------------------

    @property
    def holder(self) -> str | None:
        """The volunteer the task is open with (offered to or accepted by), if any."""
        return self.volunteer_id if self.status in OPEN_STATES else None

    def need(self, now: datetime) -> Need:
        """What the task needs, now (never before now; tried volunteers excluded)."""
        start = max(now, self.need_start)
        return Need(
            skills=tuple(Skill(s) for s in self.skills),
            community=self.community,
            compound=self.compound,
            lat=self.lat,
            lng=self.lng,
            start=start,
            end=max(start, self.need_end),
            exclude=frozenset(self.tried),
        )

    def refusal(
        self, action: Action, actor: str, actor_is_staff: bool, now: datetime
    ) -> Refusal | None:
        """Why ``actor`` may not perform ``action`` now (None: they may)."""
        return check_action(
            action,
            status=self.status,
            assignee=self.volunteer_id,
            actor=actor,
            actor_is_staff=actor_is_staff,
            accept_by=self.accept_by,
            now=now,
            offered_before=actor in self.tried,
        )

    # --- the walk ----------------------------------------------------------------------------

    def offer_next(self, result: MatchResult, now: datetime, accept_window: timedelta) -> Event:
        """Offer the task to the best remaining candidate, or report that nobody is left."""
        self.excluded = dict(result.excluded)
        self.updated_at = now
        best = result.best
        if best is None:
            reason = (
                "every eligible volunteer declined or let the offer expire"
                if self.tried
                else "no active volunteer with the skill, availability and free capacity"
            )
            self.status = TaskStatus.UNMATCHED
            self.volunteer_id = self.volunteer_name = None
            self.accept_by = None
            self.unmatched_reason = reason
            return TaskUnmatched(
                request_id=self.request_id,
                task_id=self.id,
                case_id=self.case_id,
                skills=[Skill(s) for s in self.skills],
                reason=reason,
                tried=list(self.tried),
            )
        cand = best.candidate
        self.attempt += 1
        self.status = TaskStatus.OFFERED
        self.volunteer_id, self.volunteer_name = cand.id, cand.name
        self.skill = best.skill.value
        self.accept_by = now + accept_window
        self.scores = dict(best.scores)
        self.ranking = [
            {"volunteer_id": r.candidate.id, "skill": r.skill.value, **r.scores}
            for r in result.ranked[:10]
        ]
        self.offers.append(
            {
                "attempt": self.attempt,
                "volunteer_id": cand.id,
                "volunteer_name": cand.name,
                "skill": best.skill.value,
                "offered_at": now,
                "accept_by": self.accept_by,
                "available_at": best.available_at,
                "scores": dict(best.scores),
                "ranking": list(self.ranking),
                "excluded": dict(result.excluded),
            }
        )
        if cand.id not in self.tried:
            self.tried.append(cand.id)
        return TaskOffered(
            request_id=self.request_id,
            task_id=self.id,
            case_id=self.case_id,
            volunteer_id=cand.id,
            volunteer_name=cand.name,
            skill=best.skill,
            accept_by=self.accept_by,
            scores=best.scores,
            attempt=self.attempt,
        )

    def accept(self, now: datetime) -> TaskAccepted:
        """The offered volunteer accepts (checked with :meth:`refusal` first)."""
        ev = TaskAccepted(**self._about(now))
        self._ended("accepted", now)
        self.status = TaskStatus.ACCEPTED
        self.accepted_at = self.updated_at = now
        return ev

    def decline(self, now: datetime, reason: str | None) -> TaskDeclined:
        """The offered volunteer declines; :meth:`offer_next` follows."""
        ev = TaskDeclined(**self._about(now), reason=reason)
        self._ended("declined", now, reason)
        return ev

    def expire(self, now: datetime) -> TaskExpired:
        """The offer's accept deadline passed unanswered; :meth:`offer_next` follows."""
        ev = TaskExpired(**self._about(now))
        self._ended("expired", now)
        return ev

    def complete(self, now: datetime, hours: float, note: str | None, by: str) -> TaskCompleted:
        """The volunteer (or staff for them) completes the accepted task with hours."""
        ev = TaskCompleted(**self._about(now), hours=hours, note=note)
        self.status = TaskStatus.COMPLETED
        self.completed_at = self.updated_at = now
        self.hours, self.note, self.completed_by = hours, note, by
        return ev

    def case_ended(self, why: str, now: datetime) -> bool:
        """The case was resolved or closed: an offer still pending is cancelled (True); an
        accepted task stays so the volunteer can still complete it."""
        self.case_status = why
        if self.status != TaskStatus.OFFERED:
            return False
        self._ended("cancelled", now)
        self.status = TaskStatus.CANCELLED
        self.cancelled_reason = f"case {why}"
        self.updated_at = now
        self.history.append({"at": now, "event": f"case.{why}"})
        return True

    def log(self, at: datetime, event: str, event_id: str) -> None:
        """Note a published event in the task's history."""
        self.history.append({"at": at, "event": event, "event_id": event_id})

    def _about(self, now: datetime) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "task_id": self.id,
            "case_id": self.case_id,
            "volunteer_id": self.volunteer_id,
            "at": now,
            "attempt": self.attempt,
        }

    def _ended(self, outcome: str, now: datetime, reason: str | None = None) -> None:
        """How the current offer ended (kept beside the append-only ``offers`` list)."""
        entry: dict[str, Any] = {"outcome": outcome, "at": now}
        if reason:
            entry["reason"] = reason
        self.offer_outcomes[str(self.attempt)] = entry


_TASK_FIELDS = set(Task.__dataclass_fields__)
