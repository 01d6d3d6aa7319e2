"""The task walk: offer a case's task to the best candidate, then accept / decline /
expiry → the next candidate … → ``task.unmatched``; complete records hours.

Every state change and its events (and the offer's accept deadline) commit in one
transaction; the task document's ``status`` and ``attempt`` guard each change, so a
decline racing an expiry changes the task once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.matching import MatchResult, Need, match
from services.volunteer.domain.places import Places
from services.volunteer.domain.tasks import Action, TaskStatus, check_action
from services.volunteer.metrics import VolunteerMetrics
from services.volunteer.store import VolunteerStore, now_utc
from tongxin.contracts.enums import Skill
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import (
    CaseRouted,
    Event,
    TaskAccepted,
    TaskCompleted,
    TaskDeclined,
    TaskExpired,
    TaskOffered,
    TaskUnmatched,
)
from tongxin.contracts.topics import VOLUNTEER_TASKS
from tongxin.runtime.auth import Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc, handle_once, in_transaction
from tongxin.runtime.scheduler import Complete, DeadlineStore
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

OFFER_EXPIRY = "offer_expiry"
STAFF = frozenset({Role.STAFF, Role.ADMIN})


def task_id_for(case_id: str) -> str:
    """One task per case; its id derives from the case's."""
    return f"T-{case_id.removeprefix('C-')}"


def offer_deadline_id(task_id: str, attempt: int) -> str:
    """The accept deadline of one offer."""
    return f"offer:{task_id}:{attempt}"


@dataclass
class Step:
    """One transition: the task update, the events, the deadline to schedule/cancel."""

    set_fields: Doc
    push: Doc
    events: list[Event]
    outcomes: list[str]
    schedule: tuple[str, datetime, int] | None = None  # (deadline id, due, attempt)


class TaskWalk:
    """Offers, answers, expiries and completion of volunteer tasks for cases."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: VolunteerStore,
        settings: VolunteerSettings,
        places: Places,
        metrics: VolunteerMetrics,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.rt = rt
        self.store = store
        self.settings = settings
        self.places = places
        self.metrics = metrics
        self.deadlines = DeadlineStore(rt.db)
        self.clock = clock

    # --- matching ----------------------------------------------------------------------------

    def availability_horizon(self, now: datetime, resolve_by: datetime) -> timedelta:
        """How far ahead a volunteer's availability counts: until the case must be resolved,
        in real time. ``deadline_scale`` compresses deadlines, not the volunteers' week, so a
        scaled deadline is scaled back here (with scale 1 this is exactly ``resolve_by``)."""
        return max(timedelta(0), resolve_by - now) / self.settings.deadline_scale

    def need_of(self, task: Doc, now: datetime) -> Need:
        """What the task needs, now (never before now; tried volunteers excluded)."""
        start = max(now, task["need_start"])
        return Need(
            skills=tuple(Skill(s) for s in task["skills"]),
            community=task["community"],
            compound=task.get("compound"),
            lat=task.get("lat"),
            lng=task.get("lng"),
            start=start,
            end=max(start, task["need_end"]),
            exclude=frozenset(task.get("tried", [])),
        )

    async def rank(self, task: Doc, now: datetime) -> MatchResult:
        """Load candidates and rank them for ``task`` (timed)."""
        started = time.perf_counter()
        cands = await self.store.candidates(task["skills"], now, self.settings.fairness_window_days)
        result = match(cands, self.need_of(task, now), self.settings.activity_windows)
        self.metrics.match_seconds.observe(time.perf_counter() - started)
        return result

    async def next_step(self, task: Doc, now: datetime) -> Step:
        """Offer to the best remaining candidate, or report that nobody is left."""
        result = await self.rank(task, now)
        best = result.best
        attempt = int(task.get("attempt", 0)) + 1
        ranking = [
            {"volunteer_id": r.candidate.id, "skill": r.skill.value, **r.scores}
            for r in result.ranked[:10]
        ]
        if best is None:
            tried = list(task.get("tried", []))
            reason = (
                "every eligible volunteer declined or let the offer expire"
                if tried
                else "no active volunteer with the skill, availability and free capacity"
            )
            ev: Event = TaskUnmatched(
                request_id=task["request_id"],
                task_id=task["_id"],
                case_id=task["case_id"],
                skills=[Skill(s) for s in task["skills"]],
                reason=reason,
                tried=tried,
            )
            return Step(
                {
                    "status": TaskStatus.UNMATCHED.value,
                    "volunteer_id": None,
                    "volunteer_name": None,
                    "accept_by": None,
                    "unmatched_reason": reason,
                    "excluded": result.excluded,
                    "updated_at": now,
                },
                {},
                [ev],
                ["unmatched"],
            )
        accept_by = now + self.settings.accept_window
        cand = best.candidate
        ev = TaskOffered(
            request_id=task["request_id"],
            task_id=task["_id"],
            case_id=task["case_id"],
            volunteer_id=cand.id,
            volunteer_name=cand.name,
            skill=best.skill,
            accept_by=accept_by,
            scores=best.scores,
            attempt=attempt,
        )
        offer = {
            "attempt": attempt,
            "volunteer_id": cand.id,
            "volunteer_name": cand.name,
            "skill": best.skill.value,
            "offered_at": now,
            "accept_by": accept_by,
            "available_at": best.available_at,
            "scores": best.scores,
            "ranking": ranking,
            "excluded": result.excluded,
        }
        return Step(
            {
                "status": TaskStatus.OFFERED.value,
                "attempt": attempt,
                "volunteer_id": cand.id,
                "volunteer_name": cand.name,
                "skill": best.skill.value,
                "accept_by": accept_by,
                "scores": best.scores,
                "ranking": ranking,
                "excluded": result.excluded,
                "updated_at": now,
            },
            {"offers": offer, "tried": cand.id},
            [ev],
            ["offered"],
            (offer_deadline_id(task["_id"], attempt), accept_by, attempt),
        )

    # --- transitions -------------------------------------------------------------------------

    async def _apply(
        self,
        session: AsyncClientSession,
        task: Doc,
        step: Step,
        *,
        guard: Doc,
        before: list[Event] | None = None,
        extra_set: Doc | None = None,
        cancel_offer: bool = True,
    ) -> None:
        """Write one transition inside ``session``; ApiError 409 if the guard lost a race."""
        events = [*(before or []), *step.events]
        outs = [Envelope.wrap(e, self.rt.source) for e in events]
        history = [
            {"at": step.set_fields.get("updated_at"), "event": e.event_type, "event_id": o.id}
            for e, o in zip(events, outs, strict=True)
        ]
        update: Doc = {
            "$set": {**(extra_set or {}), **step.set_fields},
            "$push": {"history": {"$each": history}},
        }
        if step.push.get("offers"):
            update["$push"]["offers"] = step.push["offers"]
            update["$addToSet"] = {"tried": step.push["tried"]}
        if not await self.store.update_task(session, guard, update):
            raise ApiError(409, "conflict", "The task changed meanwhile; read it and try again.")
        if cancel_offer and task.get("attempt"):
            await self.deadlines.cancel(session, offer_deadline_id(task["_id"], task["attempt"]))
        if step.schedule:
            dl_id, due, attempt = step.schedule
            await self.deadlines.schedule(
                session,
                dl_id,
                OFFER_EXPIRY,
                due,
                task["_id"],
                {"task_id": task["_id"], "attempt": attempt},
            )
        for o in outs:
            await self.rt.outbox.add(session, VOLUNTEER_TASKS.name, o)

    def _count(self, step: Step, *before: str) -> None:
        for o in (*before, *step.outcomes):
            self.metrics.tasks.labels(o).inc()

    async def open_for_case(self, env: Envelope, case: CaseRouted, consumer: str) -> None:
        """A routed case needs volunteers: open its task and offer it (idempotent)."""
        task_id = task_id_for(case.case_id)
        if await self.store.get_task(task_id) is not None:
            return  # a second case.routed for the same case (e.g. another event id)
        now = self.clock()
        lat, lng = self.places.point(case.compound)
        task: Doc = {
            "_id": task_id,
            "kind": "case",
            "case_id": case.case_id,
            "request_id": case.request_id,
            "tier": case.tier.value,
            "category": case.category.value,
            "skills": [s.value for s in case.skills],
            "community": case.community,
            "compound": case.compound,
            "lat": lat,
            "lng": lng,
            "need_start": now,
            "need_end": now + self.availability_horizon(now, case.resolve_by),
            "created_at": now,
            "updated_at": now,
            "status": "new",
            "attempt": 0,
            "tried": [],
            "offers": [],
            "history": [],
        }
        step = await self.next_step(task, now)

        async def apply(session: AsyncClientSession) -> None:
            await self.store.insert_task(session, task)
            await self._apply(session, task, step, guard={"_id": task_id, "status": "new"})

        if await handle_once(self.rt.mongo, self.rt.db, consumer, env.id, apply):
            self._count(step)
            self.rt.relay.nudge()

    async def _load_for(self, task_id: str, action: Action, who: Principal) -> Doc:
        task = await self.store.get_task(task_id)
        if task is None:
            raise ApiError(404, "not_found", f"No task {task_id}.")
        refusal = check_action(
            action,
            status=task["status"],
            assignee=task.get("volunteer_id"),
            actor=who.sub,
            actor_is_staff=who.role in STAFF,
            accept_by=task.get("accept_by"),
            now=self.clock(),
            offered_before=who.sub in task.get("tried", []),
        )
        if refusal is not None:
            raise ApiError(refusal.status, refusal.code, refusal.message)
        return task

    def _event_base(self, task: Doc, now: datetime) -> dict[str, Any]:
        return {
            "request_id": task["request_id"],
            "task_id": task["_id"],
            "case_id": task["case_id"],
            "volunteer_id": task["volunteer_id"],
            "at": now,
            "attempt": task["attempt"],
        }

    def _offer_outcome(
        self, task: Doc, outcome: str, now: datetime, reason: str | None = None
    ) -> Doc:
        """How the current offer ended (kept beside the append-only ``offers`` list)."""
        entry: Doc = {"outcome": outcome, "at": now}
        if reason:
            entry["reason"] = reason
        return {f"offer_outcomes.{task['attempt']}": entry}

    async def accept(self, task_id: str, who: Principal) -> Doc:
        """The volunteer accepts their offer."""
        task = await self._load_for(task_id, Action.ACCEPT, who)
        now = self.clock()
        ev = TaskAccepted(**self._event_base(task, now))
        step = Step(
            {"status": TaskStatus.ACCEPTED.value, "accepted_at": now, "updated_at": now},
            {},
            [ev],
            ["accepted"],
        )
        guard = {"_id": task_id, "status": "offered", "attempt": task["attempt"]}
        extra = self._offer_outcome(task, "accepted", now)
        await in_transaction(
            self.rt.mongo,
            lambda s: self._apply(s, task, step, guard=guard, extra_set=extra),
        )
        self._count(step)
        self.rt.relay.nudge()
        return await self._reload(task_id)

    async def decline(self, task_id: str, who: Principal, reason: str | None) -> Doc:
        """The volunteer declines; the task goes to the next candidate (or unmatched)."""
        task = await self._load_for(task_id, Action.DECLINE, who)
        now = self.clock()
        declined = TaskDeclined(**self._event_base(task, now), reason=reason)
        step = await self.next_step(task, now)
        guard = {"_id": task_id, "status": "offered", "attempt": task["attempt"]}
        extra = self._offer_outcome(task, "declined", now, reason)
        await in_transaction(
            self.rt.mongo,
            lambda s: self._apply(s, task, step, guard=guard, before=[declined], extra_set=extra),
        )
        self._count(step, "declined")
        self.rt.relay.nudge()
        return await self._reload(task_id)

    async def complete(self, task_id: str, who: Principal, hours: float, note: str | None) -> Doc:
        """The volunteer (or staff on their behalf) completes the task and records hours."""
        task = await self._load_for(task_id, Action.COMPLETE, who)
        now = self.clock()
        ev = TaskCompleted(**self._event_base(task, now), hours=hours, note=note)
        step = Step(
            {
                "status": TaskStatus.COMPLETED.value,
                "completed_at": now,
                "hours": hours,
                "note": note,
                "completed_by": who.sub,
                "updated_at": now,
            },
            {},
            [ev],
            ["completed"],
        )
        guard = {"_id": task_id, "status": "accepted", "attempt": task["attempt"]}

        async def txn(session: AsyncClientSession) -> None:
            await self._apply(session, task, step, guard=guard, cancel_offer=False)
            await self.store.add_hours(
                session,
                {
                    "_id": task_id,
                    "kind": "task",
                    "volunteer_id": task["volunteer_id"],
                    "hours": hours,
                    "skill": task.get("skill"),
                    "community": task.get("community"),
                    "at": now,
                    "note": note,
                },
            )

        await in_transaction(self.rt.mongo, txn)
        self._count(step)
        self.metrics.hours.labels("task").inc(hours)
        self.rt.relay.nudge()
        return await self._reload(task_id)

    async def expire(self, deadline: Doc, complete: Complete) -> None:
        """Deadline handler: an offer was not answered in time → the next candidate."""
        payload = deadline.get("payload", {})
        task = await self.store.get_task(payload.get("task_id", ""))
        attempt = payload.get("attempt")
        if task is None or task["status"] != "offered" or task.get("attempt") != attempt:
            await in_transaction(self.rt.mongo, complete)  # answered meanwhile: nothing to do
            return
        now = self.clock()
        expired = TaskExpired(**self._event_base(task, now))
        step = await self.next_step(task, now)
        guard = {"_id": task["_id"], "status": "offered", "attempt": attempt}
        extra = self._offer_outcome(task, "expired", now)

        async def txn(session: AsyncClientSession) -> None:
            await complete(session)
            await self._apply(
                session,
                task,
                step,
                guard=guard,
                before=[expired],
                extra_set=extra,
                cancel_offer=False,
            )

        try:
            await in_transaction(self.rt.mongo, txn)
        except ApiError:
            # answered between our read and write: just mark the deadline done
            await in_transaction(self.rt.mongo, complete)
            return
        self._count(step, "expired")
        self.rt.relay.nudge()

    async def case_ended(self, env: Envelope, case_id: str, why: str, consumer: str) -> None:
        """``case.resolved`` / ``case.closed``: stop walking the list for this case."""
        task = await self.store.task_for_case(case_id)
        now = self.clock()
        cancelled = False

        async def apply(session: AsyncClientSession) -> None:
            nonlocal cancelled
            if task is None:
                return
            if task["status"] == "offered":
                cancelled = await self.store.update_task(
                    session,
                    {"_id": task["_id"], "status": "offered", "attempt": task["attempt"]},
                    {
                        "$set": {
                            "status": TaskStatus.CANCELLED.value,
                            "cancelled_reason": f"case {why}",
                            "case_status": why,
                            "updated_at": now,
                            **self._offer_outcome(task, "cancelled", now),
                        },
                        "$push": {"history": {"at": now, "event": f"case.{why}"}},
                    },
                )
                if not cancelled:
                    raise RuntimeError("task changed while cancelling; retry")
                await self.deadlines.cancel_subject(session, task["_id"])
            else:
                await self.store.update_task(
                    session, {"_id": task["_id"]}, {"$set": {"case_status": why}}
                )

        if await handle_once(self.rt.mongo, self.rt.db, consumer, env.id, apply) and cancelled:
            self.metrics.tasks.labels("cancelled").inc()

    async def _reload(self, task_id: str) -> Doc:
        task = await self.store.get_task(task_id)
        assert task is not None
        return task
