"""Volunteer's use cases, in batches: the task walk, special-care visits and the registry.

Whoever asks — a poll of case events, a batch of fired deadlines, concurrent HTTP callers
(through one :class:`~tongxin.runtime.uow.Batcher` per use case) — a batch of inputs is
decided the same way: load what the whole batch needs with one query per collection, let
the domain decide input after input on the loaded records (a later input sees what an
earlier one changed: the load a volunteer was just offered, a visit just recorded), and
write each changed record once, conditional on the version it was read at. Another
replica or request in between decides the batch again; a refused input (the domain's
:class:`~services.volunteer.domain.refusals.Rejected`) leaves the others alone.

The only caller of the store.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.care import CARE_SKILL, Recipient, Visit, VisitStatus, visit_id
from services.volunteer.domain.matching import Pool, match
from services.volunteer.domain.places import Places
from services.volunteer.domain.refusals import (
    Conflict,
    Invalid,
    NotFound,
    Rejected,
    refuse_nulls,
)
from services.volunteer.domain.tasks import (
    Action,
    Task,
    TaskStatus,
    offer_deadline_id,
    task_id_for,
)
from services.volunteer.domain.volunteers import (
    Brigade,
    ServiceHours,
    Squad,
    Volunteer,
    registry_events,
)
from services.volunteer.metrics import VolunteerMetrics
from services.volunteer.store import HoursSummary, SkillHours, VolunteerStore, now_utc
from tongxin.contracts.enums import CareType
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import (
    CaseClosed,
    CaseResolved,
    CaseRouted,
    Event,
    VolunteerDeactivated,
)
from tongxin.contracts.topics import VOLUNTEER_REGISTRY, VOLUNTEER_TASKS
from tongxin.runtime.auth import STAFF_ROLES, Principal, Role
from tongxin.runtime.mongo import Doc
from tongxin.runtime.scheduler import add, cancel, cancel_subject, schedule
from tongxin.runtime.service import ServiceRuntime
from tongxin.runtime.uow import Batcher, Decision, Effects, Refused, events_only

log = logging.getLogger(__name__)

OFFER_EXPIRY = "offer_expiry"
CARE_GENERATE = "care_generate"
CARE_OVERDUE = "care_overdue"
PLACE_FIELDS = ("community", "compound", "lat", "lng")

Clock = Callable[[], datetime]
# recent hours are kept a day longer than the fairness window: a replica whose clock is
# behind the one that recorded an entry still finds every entry of its window
RECENT_MARGIN_DAYS = 1


def recent_hours_days(settings: VolunteerSettings) -> int:
    """How many days of hours each volunteer's recent hours hold."""
    return settings.fairness_window_days + RECENT_MARGIN_DAYS


def recent_hours_from(settings: VolunteerSettings, now: datetime) -> datetime:
    """The oldest instant whose hours a volunteer's recent hours keep."""
    return now - timedelta(days=recent_hours_days(settings))


def generate_subject(rid: str) -> str:
    """Deadline subject of a recipient's visit generation."""
    return f"care-gen:{rid}"


def overdue_subject(rid: str) -> str:
    """Deadline subject of a recipient's overdue checks."""
    return f"care-visit:{rid}"


def generate_deadline_id(rid: str, seq: int) -> str:
    """The deadline at which visit ``seq`` of ``rid`` falls due."""
    return f"care-gen:{rid}:{seq}"


def overdue_deadline_id(vid: str) -> str:
    """The deadline at which an unrecorded visit becomes overdue."""
    return f"care-overdue:{vid}"


class InvalidEvent(Refused):
    """A consumed event whose payload is not what its type says (parked with why)."""


class UnknownDeadline(Refused):
    """A deadline of a kind nobody fires (given back and tried again later)."""


class _Record(Protocol):
    id: str
    version: int


R = TypeVar("R", bound=_Record)


class _Kept(Generic[R]):
    """Records of one kind in a batch: as loaded (their versions condition the writes),
    as the inputs so far left them, and which were created or changed — written once each,
    in the order they first changed."""

    def __init__(self, loaded: Mapping[str, R]) -> None:
        self.loaded = dict(loaded)
        self.current = copy.deepcopy(self.loaded)
        self.new: set[str] = set()
        self.changed: list[str] = []

    def get(self, rid: str) -> R | None:
        """The record as the batch left it so far."""
        return self.current.get(rid)

    def __contains__(self, rid: str) -> bool:
        return rid in self.current

    def keep(self, record: R, *, new: bool = False) -> None:
        """``record`` is now the batch's (``new``: it is inserted, not replaced)."""
        self.current[record.id] = record
        if new:
            self.new.add(record.id)
        if record.id not in self.changed:
            self.changed.append(record.id)

    def writes(self) -> Iterator[tuple[R, int | None]]:
        """Each changed record with the version it was read at (None: a new one)."""
        for rid in self.changed:
            yield self.current[rid], None if rid in self.new else self.loaded[rid].version


# — the task walk —


@dataclass(frozen=True, slots=True)
class Route:
    """A routed case: if it needs volunteers, open its task and offer it."""

    case: CaseRouted


@dataclass(frozen=True, slots=True)
class CaseEnded:
    """A case was resolved or closed: stop walking the list for it."""

    case_id: str
    why: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A volunteer accepts, declines or completes (staff may complete for them)."""

    task_id: str
    action: Action
    by: Principal
    reason: str | None = None
    hours: float = 0.0
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Expire:
    """The accept deadline of offer ``attempt`` passed."""

    task_id: str
    attempt: int | None


TaskInput = Route | CaseEnded | Answer | Expire


@dataclass
class _TaskBatch:
    """The tasks of one batch as the inputs so far left them."""

    tasks: _Kept[Task]
    pool: Pool | None = None  # the batch's candidates and the loads it gave them
    pool_seconds: float = 0.0  # how long loading the candidates took
    outcomes: list[str] = field(default_factory=list)  # metrics after the commit
    match_seconds: list[float] = field(default_factory=list)
    hours: list[float] = field(default_factory=list)


class TaskWalk:
    """Offers, answers, expiries, completion and cancellation of volunteer tasks."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: VolunteerStore,
        settings: VolunteerSettings,
        places: Places,
        metrics: VolunteerMetrics,
        clock: Clock = now_utc,
    ) -> None:
        self.source = rt.source
        self.store = store
        self.settings = settings
        self.places = places
        self.metrics = metrics
        self.clock = clock
        self.answers: Batcher[TaskInput, Task | None] = rt.batcher("task-answers", self.decide)

    def availability_horizon(self, now: datetime, resolve_by: datetime) -> timedelta:
        """How far ahead a volunteer's availability counts: until the case must be resolved,
        in real time. ``deadline_scale`` compresses deadlines, not the volunteers' week, so a
        scaled deadline is scaled back here (with scale 1 this is exactly ``resolve_by``)."""
        return max(timedelta(0), resolve_by - now) / self.settings.deadline_scale

    # — the one decision —

    async def decide(self, inputs: Sequence[TaskInput]) -> Decision[Task | None]:
        """Load the batch's tasks (and, if any input may offer, the candidates once), apply
        each input in order, write each changed task once."""
        now = self.clock()
        loaded = await self.store.tasks_by_id(_task_id(i) for i in inputs)
        batch = _TaskBatch(_Kept(loaded))
        skills = self._skills_to_match(inputs, loaded)
        if skills:
            started = time.perf_counter()
            batch.pool = await self._pool(skills, now)
            batch.pool_seconds = time.perf_counter() - started
        decision: Decision[Task | None] = Decision()
        fx = decision.effects
        for n, item in enumerate(inputs):
            try:
                decision.done(n, self._apply(item, batch, fx, now))
            except Rejected as exc:  # the rules turned it down: its own effects are none
                decision.refuse(n, exc)
        for task, read in batch.tasks.writes():
            if read is None:
                self.store.insert_task(fx, task)
            else:
                self.store.save_task(fx, task, read)
        fx.on_commit(lambda: self._observe(batch))
        return decision

    def _skills_to_match(self, inputs: Sequence[TaskInput], tasks: Mapping[str, Task]) -> set[str]:
        """The skills of every task of the batch that may be offered to someone."""
        skills: set[str] = set()
        for item in inputs:
            if isinstance(item, Route) and item.case.needs_volunteers:
                if task_id_for(item.case.case_id) not in tasks:  # opened before: no offer
                    skills.update(s.value for s in item.case.skills)
            elif isinstance(item, Expire) or (
                isinstance(item, Answer) and item.action is Action.DECLINE
            ):
                task = tasks.get(item.task_id)
                if task is not None:
                    skills.update(task.skills)
        return skills

    async def _pool(self, skills: Iterable[str], now: datetime) -> Pool:
        """Active volunteers with any of ``skills``, their open tasks and recent work
        (three queries for the whole batch)."""
        vols = await self.store.active_with_skills(skills)
        ids = [v.id for v in vols]
        since = now - timedelta(days=self.settings.fairness_window_days)
        load, recent = await asyncio.gather(
            self.store.open_counts(ids), self.store.recent_work(ids, since)
        )
        return Pool(
            {v.id: v.candidate(load.get(v.id, 0), *recent.get(v.id, (0, 0.0))) for v in vols}
        )

    def _apply(self, item: TaskInput, batch: _TaskBatch, fx: Effects, now: datetime) -> Task | None:
        if isinstance(item, Route):
            return self._open(item.case, batch, fx, now)
        if isinstance(item, CaseEnded):
            return self._case_ended(item, batch, fx, now)
        if isinstance(item, Expire):
            return self._expire(item, batch, fx, now)
        return self._answer(item, batch, fx, now)

    def _open(self, case: CaseRouted, batch: _TaskBatch, fx: Effects, now: datetime) -> Task | None:
        """A routed case needs volunteers: open its task and offer it (once per case)."""
        if not case.needs_volunteers or not case.skills:
            return None
        tid = task_id_for(case.case_id)
        opened = batch.tasks.get(tid)
        if opened is not None:  # a second case.routed for the same case (e.g. a revision)
            return opened
        lat, lng = self.places.point(case.compound)
        task = Task(
            id=tid,
            case_id=case.case_id,
            request_id=case.request_id,
            tier=case.tier.value,
            category=case.category.value,
            skills=[s.value for s in case.skills],
            community=case.community,
            compound=case.compound,
            lat=lat,
            lng=lng,
            need_start=now,
            need_end=now + self.availability_horizon(now, case.resolve_by),
            created_at=now,
            updated_at=now,
        )
        offered = self._offer(task, batch, now)
        self._moved(None, task, [offered], batch, fx, now)
        return task

    def _answer(self, item: Answer, batch: _TaskBatch, fx: Effects, now: datetime) -> Task:
        current = batch.tasks.get(item.task_id)
        if current is None:
            raise NotFound(f"No task {item.task_id}.")
        refusal = current.refusal(item.action, item.by.sub, item.by.role in STAFF_ROLES, now)
        if refusal is not None:
            raise refusal.error()
        task = copy.deepcopy(current)
        events: list[Event]
        if item.action is Action.ACCEPT:
            events = [task.accept(now)]
            cancel(fx, offer_deadline_id(task.id, current.attempt), now)
            batch.outcomes.append("accepted")
        elif item.action is Action.DECLINE:
            events = [task.decline(now, item.reason), self._offer(task, batch, now)]
            cancel(fx, offer_deadline_id(task.id, current.attempt), now)
            batch.outcomes.append("declined")
        else:
            events = [task.complete(now, item.hours, item.note, item.by.sub)]
            worker = task.volunteer_id or ""
            self.store.add_hours(
                fx,
                ServiceHours(
                    id=task.id,
                    kind="task",
                    volunteer_id=worker,
                    hours=item.hours,
                    skill=task.skill,
                    community=task.community,
                    at=now,
                    note=item.note,
                ),
                recent_hours_from(self.settings, now),
            )
            if batch.pool is not None:
                batch.pool.worked(worker, item.hours)
            batch.hours.append(item.hours)
            batch.outcomes.append("completed")
        self._moved(current, task, events, batch, fx, now)
        return task

    def _expire(self, item: Expire, batch: _TaskBatch, fx: Effects, now: datetime) -> Task | None:
        """An offer was not answered in time → the next candidate (if it is still the
        offer that is pending; an answer meanwhile leaves nothing to do)."""
        current = batch.tasks.get(item.task_id)
        if current is None or current.status != TaskStatus.OFFERED:
            return None
        if current.attempt != item.attempt:
            return None
        task = copy.deepcopy(current)
        events = [task.expire(now), self._offer(task, batch, now)]
        batch.outcomes.append("expired")
        self._moved(current, task, events, batch, fx, now)
        return task

    def _case_ended(
        self, item: CaseEnded, batch: _TaskBatch, fx: Effects, now: datetime
    ) -> Task | None:
        """``case.resolved`` / ``case.closed``: a pending offer is cancelled (its deadline
        too); an accepted task stays so the volunteer can still complete it."""
        current = batch.tasks.get(task_id_for(item.case_id))
        if current is None:
            return None
        task = copy.deepcopy(current)
        if task.case_ended(item.why, now):
            cancel_subject(fx, task.id, now)
            batch.outcomes.append("cancelled")
        self._moved(current, task, [], batch, fx, now)
        return task

    def _offer(self, task: Task, batch: _TaskBatch, now: datetime) -> Event:
        """Rank the batch's candidates for ``task`` and offer it to the best one (or report
        that nobody is left)."""
        started = time.perf_counter()
        need = task.need(now)
        pool = batch.pool or Pool()
        result = match(pool.for_skills(need.skills), need, self.settings.activity_windows)
        batch.match_seconds.append(batch.pool_seconds + time.perf_counter() - started)
        event = task.offer_next(result, now, self.settings.accept_window)
        batch.outcomes.append("offered" if task.status == TaskStatus.OFFERED else "unmatched")
        return event

    def _moved(
        self,
        before: Task | None,
        task: Task,
        events: Sequence[Event],
        batch: _TaskBatch,
        fx: Effects,
        now: datetime,
    ) -> None:
        """Keep ``task`` as the batch's, move the loads, add its new offer's deadline and
        publish its events (through the outbox, in order, noted in its history)."""
        batch.tasks.keep(task, new=before is None)
        if batch.pool is not None:
            batch.pool.moved(before.holder if before else None, task.holder)
        new_offer = task.status == TaskStatus.OFFERED and (
            before is None or before.attempt != task.attempt
        )
        if new_offer and task.accept_by is not None:
            add(
                fx,
                offer_deadline_id(task.id, task.attempt),
                OFFER_EXPIRY,
                task.accept_by,
                task.id,
                {"task_id": task.id, "attempt": task.attempt},
            )
        for ev in events:
            env = Envelope.wrap(ev, self.source)
            task.log(now, ev.event_type, env.id)
            fx.emit(VOLUNTEER_TASKS.name, env)

    def _observe(self, batch: _TaskBatch) -> None:
        """Metrics of a committed batch."""
        for outcome in batch.outcomes:
            self.metrics.tasks.labels(outcome).inc()
        for seconds in batch.match_seconds:
            self.metrics.match_seconds.observe(seconds)
        for hours in batch.hours:
            self.metrics.hours.labels("task").inc(hours)

    # — inputs from events and deadlines —

    @staticmethod
    def case_input(env: Envelope) -> TaskInput:
        """What a case event asks of the walk (raises on a payload that does not parse)."""
        if env.type == CaseRouted.ce_type():
            return Route(CaseRouted.model_validate(env.data))
        if env.type == CaseResolved.ce_type():
            return CaseEnded(CaseResolved.model_validate(env.data).case_id, "resolved")
        return CaseEnded(CaseClosed.model_validate(env.data).case_id, "closed")

    # — HTTP —

    async def answer(self, item: Answer, deadline: float | None) -> Task:
        """An answer over HTTP, committed with concurrent ones: the task as it is now, or
        the rules' refusal (:class:`NotFound`, ``Forbidden``, ``Conflict``)."""
        task = await self.answers.submit(item, deadline=deadline)
        assert task is not None  # an answer's outcome is its task
        return task

    # — reads —

    async def get(self, task_id: str) -> Task | None:
        """One task."""
        return await self.store.get_task(task_id)

    async def search(
        self,
        *,
        volunteer_id: str | None,
        request_id: str | None,
        case_id: str | None,
        status: TaskStatus | None,
        limit: int,
    ) -> list[Task]:
        """Tasks matching the filters given, newest first."""
        return await self.store.list_tasks(
            volunteer_id=volunteer_id,
            request_id=request_id,
            case_id=case_id,
            status=status.value if status else None,
            limit=limit,
        )


def _task_id(item: TaskInput) -> str:
    if isinstance(item, Route):
        return task_id_for(item.case.case_id)
    if isinstance(item, CaseEnded):
        return task_id_for(item.case_id)
    return item.task_id


# — special care —


@dataclass(frozen=True, slots=True)
class Register:
    """Register a recipient (``fields`` as the API takes them); visit 1 falls due now.
    ``trusted``: the seed, registered as given."""

    fields: dict[str, Any]
    id: str | None = None
    by: str | None = None
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class ChangeRecipient:
    """Staff change a recipient; ``community``: the caller sees only that community's."""

    id: str
    changes: dict[str, Any]
    community: str | None = None


@dataclass(frozen=True, slots=True)
class RecordVisit:
    """A visit was made: an assigned volunteer or staff records it with hours."""

    visit_id: str
    by: Principal
    hours: float
    note: str | None = None
    visited_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VisitDue:
    """Visit ``seq`` of a recipient falls due (a fired ``care_generate`` deadline)."""

    recipient_id: str
    seq: int
    due: datetime


@dataclass(frozen=True, slots=True)
class VisitMissed:
    """A visit's window passed (a fired ``care_overdue`` deadline)."""

    visit_id: str


CareInput = Register | ChangeRecipient | RecordVisit | VisitDue | VisitMissed


@dataclass
class _CareBatch:
    """The recipients and visits of one batch as the inputs so far left them."""

    recipients: _Kept[Recipient]
    visits: _Kept[Visit]
    volunteers: dict[str, Volunteer]  # those the batch assigns (to check they exist)
    outcomes: list[str] = field(default_factory=list)
    hours: list[float] = field(default_factory=list)
    logs: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


class CareVisits:
    """The special-care registry and its schedule (未诉先办)."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: VolunteerStore,
        settings: VolunteerSettings,
        places: Places,
        metrics: VolunteerMetrics,
        clock: Clock = now_utc,
    ) -> None:
        self.source = rt.source
        self.store = store
        self.settings = settings
        self.places = places
        self.metrics = metrics
        self.clock = clock
        self.changes: Batcher[CareInput, Recipient | Visit | None] = rt.batcher(
            "care-changes", self.decide
        )

    # — the one decision —

    async def decide(self, inputs: Sequence[CareInput]) -> Decision[Recipient | Visit | None]:
        """Load the batch's recipients, visits (and the volunteers it assigns) once, apply
        each input in order, write each changed recipient and visit once."""
        now = self.clock()
        decision: Decision[Recipient | Visit | None] = Decision()
        fx = decision.effects
        ids = await self._recipient_ids(inputs, fx)
        visit_ids = [i.visit_id for i in inputs if isinstance(i, RecordVisit | VisitMissed)] + [
            visit_id(i.recipient_id, i.seq) for i in inputs if isinstance(i, VisitDue)
        ]
        stopping = [  # deactivated: their open visits are cancelled
            i.id
            for i in inputs
            if isinstance(i, ChangeRecipient) and i.changes.get("active") is False
        ]
        assigned: set[str] = set()
        for i in inputs:
            if isinstance(i, Register) and not i.trusted:
                assigned.update(i.fields.get("assigned_volunteers") or [])
            elif isinstance(i, ChangeRecipient):
                assigned.update(i.changes.get("assigned_volunteers") or [])
        visits, volunteers = await asyncio.gather(
            self.store.visits_for(visit_ids, stopping), self.store.volunteers_by_id(assigned)
        )
        rids = [*ids.values()]
        rids += [i.id for i in inputs if isinstance(i, ChangeRecipient)]
        rids += [i.recipient_id for i in inputs if isinstance(i, VisitDue)]
        rids += [v.recipient_id for v in visits.values()]
        recipients = await self.store.recipients_by_id(rids)
        batch = _CareBatch(_Kept(recipients), _Kept(visits), volunteers)
        for n, item in enumerate(inputs):
            try:
                decision.done(n, self._apply(n, item, ids, batch, fx, now))
            except Rejected as exc:
                decision.refuse(n, exc)
        for rec, read in batch.recipients.writes():
            if read is None:
                self.store.insert_recipient(fx, rec)
            else:
                self.store.save_recipient(fx, rec, read)
        for visit, read in batch.visits.writes():
            if read is None:
                self.store.insert_visit(fx, visit)
            else:
                self.store.save_visit(fx, visit, read)
        fx.on_commit(lambda: self._observe(batch))
        return decision

    async def _recipient_ids(self, inputs: Sequence[CareInput], fx: Effects) -> dict[int, str]:
        """The ids of the registrations (by input position): given, or the next numbers of
        the ``care_recipient`` counter (read once, moved once)."""
        out = {n: i.id for n, i in enumerate(inputs) if isinstance(i, Register) and i.id}
        auto = [n for n, i in enumerate(inputs) if isinstance(i, Register) and not i.id]
        if auto:
            read = (await self.store.counter_values(["care_recipient"])).get("care_recipient")
            value = read or 0
            for n in auto:
                value += 1
                out[n] = f"care:{value:04d}"
            self.store.set_counter(fx, "care_recipient", read, value)
        return out

    def _apply(
        self,
        n: int,
        item: CareInput,
        ids: Mapping[int, str],
        batch: _CareBatch,
        fx: Effects,
        now: datetime,
    ) -> Recipient | Visit | None:
        if isinstance(item, Register):
            return self._register(item, ids[n], batch, fx, now)
        if isinstance(item, ChangeRecipient):
            return self._change(item, batch, fx, now)
        if isinstance(item, RecordVisit):
            return self._record(item, batch, fx, now)
        if isinstance(item, VisitDue):
            self._falls_due(item, batch, fx, now)
            return None
        self._missed(item, batch, fx, now)
        return None

    def _check_assigned(self, ids: Iterable[str], batch: _CareBatch) -> None:
        wanted = set(ids)
        active = {v for v in wanted if (vol := batch.volunteers.get(v)) and vol.active}
        missing = sorted(wanted - active)
        if missing:
            raise Invalid("assigned_volunteers", f"Unknown or inactive volunteers: {missing}.")

    def _register(
        self, item: Register, rid: str, batch: _CareBatch, fx: Effects, now: datetime
    ) -> Recipient:
        """Store a recipient and schedule their first visit now."""
        if not item.trusted:
            self.places.check_place(item.fields["community"], item.fields.get("compound"))
            self._check_assigned(item.fields.get("assigned_volunteers") or [], batch)
        if rid in batch.recipients:
            raise Conflict("already_exists", f"Recipient {rid} exists.")
        doc: Doc = {**item.fields, "_id": rid}
        if item.by is not None:
            doc["registered_by"] = item.by
        rec = Recipient.from_doc(doc)
        rec.created_at = rec.updated_at = now
        rec.active, rec.next_seq = True, 1
        batch.recipients.keep(rec, new=True)
        add(
            fx,
            generate_deadline_id(rid, 1),
            CARE_GENERATE,
            now,
            generate_subject(rid),
            {"recipient_id": rid, "seq": 1, "due_at": now},
        )
        return rec

    def _change(
        self, item: ChangeRecipient, batch: _CareBatch, fx: Effects, now: datetime
    ) -> Recipient:
        """Staff changes; a new cadence moves the next visit, inactive stops them."""
        current = batch.recipients.get(item.id)
        if current is None or (item.community and current.community != item.community):
            raise NotFound(f"No care recipient {item.id}.")
        refuse_nulls(item.changes, ("name", "cadence_days", "assigned_volunteers", "active"))
        if "assigned_volunteers" in item.changes:
            self._check_assigned(item.changes["assigned_volunteers"], batch)
        rec = copy.deepcopy(current)
        moved = rec.change(item.changes, now, self.settings.care_cadence)
        batch.recipients.keep(rec)
        if moved.stopped:
            cancel_subject(fx, generate_subject(rec.id), now)
            cancel_subject(fx, overdue_subject(rec.id), now)
            for visit in list(batch.visits.current.values()):
                if visit.recipient_id == rec.id and visit.status == VisitStatus.OPEN:
                    stopped = copy.deepcopy(visit)
                    stopped.cancel(now)
                    batch.visits.keep(stopped)
        elif moved.next_due is not None:
            cancel_subject(fx, generate_subject(rec.id), now)
            self._schedule_generation(fx, rec.id, rec.next_seq, moved.next_due)
        return rec

    def _record(self, item: RecordVisit, batch: _CareBatch, fx: Effects, now: datetime) -> Visit:
        """A visit was made: recorded with hours (late, if it was missed)."""
        current = batch.visits.get(item.visit_id)
        if current is None:
            raise NotFound(f"No visit {item.visit_id}.")
        visit = copy.deepcopy(current)
        volunteer = visit.record(
            by=item.by.sub,
            by_staff=item.by.role in STAFF_ROLES,
            by_volunteer=item.by.role == Role.VOLUNTEER,
            hours=item.hours,
            note=item.note,
            visited_at=item.visited_at,
            now=now,
        )
        batch.visits.keep(visit)
        cancel(fx, overdue_deadline_id(visit.id), now)
        rec = batch.recipients.get(visit.recipient_id)
        if rec is not None:
            rec = copy.deepcopy(rec)
            rec.last_visit_at = visit.visited_at
            batch.recipients.keep(rec)
        if volunteer:
            self.store.add_hours(
                fx,
                ServiceHours(
                    id=visit.id,
                    kind="care_visit",
                    volunteer_id=volunteer,
                    hours=item.hours,
                    skill=CARE_SKILL[CareType(visit.care_type)].value,
                    community=visit.community,
                    at=now,
                    note=item.note,
                ),
                recent_hours_from(self.settings, now),
            )
            batch.hours.append(item.hours)
        batch.outcomes.append("completed_late" if visit.late else "completed")
        return visit

    def _falls_due(self, item: VisitDue, batch: _CareBatch, fx: Effects, now: datetime) -> None:
        """Visit ``seq`` falls due: create it, schedule its overdue check and the next one."""
        current = batch.recipients.get(item.recipient_id)
        if current is None or not current.active:
            return  # gone or stopped meanwhile: the deadline just fires
        rec = copy.deepcopy(current)
        cadence = self.settings.care_cadence(rec.cadence_days)
        visit = rec.visit_falls_due(
            item.seq, item.due, cadence, self.settings.care_visit_window, now
        )
        batch.recipients.keep(rec)
        if visit.id not in batch.visits:
            batch.visits.keep(visit, new=True)
        schedule(
            fx,
            overdue_deadline_id(visit.id),
            CARE_OVERDUE,
            visit.deadline,
            overdue_subject(rec.id),
            {"visit_id": visit.id, "recipient_id": rec.id},
        )
        self._schedule_generation(fx, rec.id, item.seq + 1, item.due + cadence)
        batch.outcomes.append("generated")
        extra = {"visit": visit.id, "volunteer": visit.volunteer_id}
        batch.logs.append((logging.INFO, "care visit generated", extra))

    def _missed(self, item: VisitMissed, batch: _CareBatch, fx: Effects, now: datetime) -> None:
        """A visit's window passed without a record → overdue, and staff are alerted."""
        current = batch.visits.get(item.visit_id)
        if current is None or current.status != VisitStatus.OPEN:
            return  # recorded or cancelled meanwhile: the deadline just fires
        rec = batch.recipients.get(current.recipient_id)
        visit = copy.deepcopy(current)
        event = visit.overdue(now, list(rec.assigned_volunteers) if rec else [])
        env = Envelope.wrap(event, self.source)
        visit.alert_event_id = env.id
        batch.visits.keep(visit)
        fx.emit(VOLUNTEER_TASKS.name, env)
        batch.outcomes.append("overdue")
        batch.logs.append((logging.WARNING, "care visit overdue", {"visit": visit.id}))

    def _schedule_generation(self, fx: Effects, rid: str, seq: int, due: datetime) -> None:
        # an upsert: a cadence change moves a generation that was cancelled back to pending
        schedule(
            fx,
            generate_deadline_id(rid, seq),
            CARE_GENERATE,
            due,
            generate_subject(rid),
            {"recipient_id": rid, "seq": seq, "due_at": due},
        )

    def _observe(self, batch: _CareBatch) -> None:
        """Metrics and logs of a committed batch."""
        for outcome in batch.outcomes:
            self.metrics.visits.labels(outcome).inc()
        for hours in batch.hours:
            self.metrics.hours.labels("care_visit").inc(hours)
        for level, message, extra in batch.logs:
            log.log(level, message, extra=extra)

    # — inputs from deadlines —

    @staticmethod
    def deadline_input(doc: Doc) -> CareInput:
        """What a fired care deadline asks for."""
        payload = doc.get("payload") or {}
        if doc["kind"] == CARE_GENERATE:
            return VisitDue(str(payload["recipient_id"]), int(payload["seq"]), payload["due_at"])
        return VisitMissed(str(payload.get("visit_id", "")))

    # — HTTP —

    async def register(self, item: Register, deadline: float | None) -> Recipient:
        """Register a recipient (committed with concurrent changes)."""
        out = await self.changes.submit(item, deadline=deadline)
        assert isinstance(out, Recipient)
        return out

    async def change(self, item: ChangeRecipient, deadline: float | None) -> Recipient:
        """Change a recipient (committed with concurrent changes)."""
        out = await self.changes.submit(item, deadline=deadline)
        assert isinstance(out, Recipient)
        return out

    async def record(self, item: RecordVisit, deadline: float | None) -> Visit:
        """Record a visit (committed with concurrent changes)."""
        out = await self.changes.submit(item, deadline=deadline)
        assert isinstance(out, Visit)
        return out

    # — reads —

    async def recipient(self, rid: str, community: str | None = None) -> Recipient | None:
        """One recipient (None when unknown, or not of ``community`` when one is given)."""
        rec = await self.store.get_recipient(rid)
        if rec is None or (community and rec.community != community):
            return None
        return rec

    async def recipients(
        self, *, community: str | None, care_type: CareType | None, active: bool | None, limit: int
    ) -> list[Recipient]:
        """Recipients matching the filters given, by id."""
        return await self.store.list_recipients(
            community=community,
            care_type=care_type.value if care_type else None,
            active=active,
            limit=limit,
        )

    async def visits_of(self, rid: str) -> list[Visit]:
        """A recipient's visits, newest first."""
        return await self.store.visits_of(rid)

    async def visits(
        self, *, assigned_to: str | None, status: VisitStatus | None, limit: int
    ) -> list[Visit]:
        """Visits (assigned to a volunteer, in a status), latest due first."""
        return await self.store.list_visits(
            assigned_to=assigned_to, status=status.value if status else None, limit=limit
        )

    async def overdue(self, community: str | None) -> list[tuple[Visit, Recipient | None]]:
        """Visits missed and not yet made, oldest first, each with its recipient."""
        visits = await self.store.overdue_visits(community)
        recipients = await self.store.recipients_by_id(v.recipient_id for v in visits)
        return [(v, recipients.get(v.recipient_id)) for v in visits]


# — the registry —


@dataclass(frozen=True, slots=True)
class NewVolunteer:
    """Register a volunteer (``fields`` as the API takes them; the id, or the next one)."""

    fields: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class EditVolunteer:
    """Change (or deactivate) a volunteer."""

    id: str
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewSquad:
    """Form a squad (id: given, or ``squad:<skill>``)."""

    fields: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class EditSquad:
    """Rename a squad or change its captain."""

    id: str
    changes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EditBrigade:
    """Change the brigade's name or leader (``None`` values change nothing)."""

    changes: dict[str, Any]


RegistryInput = NewVolunteer | EditVolunteer | NewSquad | EditSquad | EditBrigade
RegistryRecord = Volunteer | Squad | Brigade


@dataclass
class _RegistryBatch:
    volunteers: _Kept[Volunteer]
    squads: _Kept[Squad]
    loaded_brigade: Brigade | None
    brigade: Brigade | None = None
    brigade_changed: bool = False
    # what the batch's registry changes publish, in order
    events: list[Event] = field(default_factory=list)


class Registry:
    """The red-vest registry: volunteers, squads and the brigade."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: VolunteerStore,
        settings: VolunteerSettings,
        places: Places,
        clock: Clock = now_utc,
    ) -> None:
        self.store = store
        self.settings = settings
        self.places = places
        self.clock = clock
        self.source = rt.source
        self.edits: Batcher[RegistryInput, RegistryRecord] = rt.batcher(
            "registry-edits", self.decide
        )

    async def decide(self, inputs: Sequence[RegistryInput]) -> Decision[RegistryRecord]:
        """Load the volunteers, squads and brigade the batch touches once, apply each input
        in order, write each changed record once; a registration or a deactivation is
        published (``tongxin.volunteer.registry.v1``) through the outbox in the same commit."""
        now = self.clock()
        decision: Decision[RegistryRecord] = Decision()
        fx = decision.effects
        ids = await self._volunteer_ids(inputs, fx)
        vids = [*ids.values()]
        squad_ids: dict[int, str] = {}
        for n, item in enumerate(inputs):
            if isinstance(item, EditVolunteer):
                vids.append(item.id)
            elif isinstance(item, NewSquad):
                squad_ids[n] = item.id or f"squad:{item.fields['skill']}"
                vids.append(item.fields.get("captain_id") or "")
            elif isinstance(item, EditSquad):
                squad_ids[n] = item.id
                vids.append(item.changes.get("captain_id") or "")
        wants_brigade = any(isinstance(i, EditBrigade) for i in inputs)
        volunteers, squads, brigade = await asyncio.gather(
            self.store.volunteers_by_id(v for v in vids if v),
            self.store.squads_by_id(squad_ids.values()),
            self.store.get_brigade() if wants_brigade else _none(),
        )
        batch = _RegistryBatch(_Kept(volunteers), _Kept(squads), brigade, copy.deepcopy(brigade))
        for n, item in enumerate(inputs):
            try:
                decision.done(n, self._apply(item, ids.get(n) or squad_ids.get(n), batch, now))
            except Rejected as exc:
                decision.refuse(n, exc)
        for vol, read in batch.volunteers.writes():
            if read is None:
                self.store.insert_volunteer(fx, vol)
            else:
                self.store.save_volunteer(fx, vol, read)
        for squad, read in batch.squads.writes():
            if read is None:
                self.store.insert_squad(fx, squad)
            else:
                self.store.save_squad(fx, squad, read)
        if batch.brigade_changed and batch.brigade is not None:
            read = batch.loaded_brigade.version if batch.loaded_brigade else None
            self.store.save_brigade(fx, batch.brigade, read)
        for event in batch.events:
            fx.emit(VOLUNTEER_REGISTRY.name, Envelope.wrap(event, self.source))
        gone = [e.volunteer_id for e in batch.events if isinstance(e, VolunteerDeactivated)]
        for task in await self.store.offered_to(gone):
            # a deactivated volunteer's pending offer lapses now: its deadline, moved to
            # this instant, walks the task on to the next candidate (an answer or a later
            # offer before it fires leaves it nothing to do)
            payload = {"task_id": task.id, "attempt": task.attempt}
            deadline = offer_deadline_id(task.id, task.attempt)
            schedule(fx, deadline, OFFER_EXPIRY, now, task.id, payload)
        return decision

    async def _volunteer_ids(self, inputs: Sequence[RegistryInput], fx: Effects) -> dict[int, str]:
        """The ids of new volunteers (by input position): given, or the next numbers of the
        ``volunteer`` counter (read once, moved once)."""
        out = {n: i.id for n, i in enumerate(inputs) if isinstance(i, NewVolunteer) and i.id}
        auto = [n for n, i in enumerate(inputs) if isinstance(i, NewVolunteer) and not i.id]
        if auto:
            read = (await self.store.counter_values(["volunteer"])).get("volunteer")
            value = read or 0
            for n in auto:
                value += 1
                out[n] = f"vol:{value:04d}"
            self.store.set_counter(fx, "volunteer", read, value)
        return out

    def _apply(
        self, item: RegistryInput, rid: str | None, batch: _RegistryBatch, now: datetime
    ) -> RegistryRecord:
        if isinstance(item, NewVolunteer):
            assert rid is not None
            return self._new_volunteer(item, rid, batch, now)
        if isinstance(item, EditVolunteer):
            return self._edit_volunteer(item, batch, now)
        if isinstance(item, NewSquad):
            assert rid is not None
            return self._new_squad(item, rid, batch, now)
        if isinstance(item, EditSquad):
            return self._edit_squad(item, batch)
        return self._edit_brigade(item, batch)

    def _new_volunteer(
        self, item: NewVolunteer, vid: str, batch: _RegistryBatch, now: datetime
    ) -> Volunteer:
        f = item.fields
        lat, lng = self.places.locate(f["community"], f.get("compound"), f.get("lat"), f.get("lng"))
        if vid in batch.volunteers:
            raise Conflict("already_exists", f"Volunteer {vid} exists.")
        vol = Volunteer.from_doc({**f, "_id": vid, "lat": lat, "lng": lng})
        vol.created_at = vol.updated_at = now
        batch.volunteers.keep(vol, new=True)
        batch.events += registry_events(None, vol, now)
        return vol

    def _edit_volunteer(
        self, item: EditVolunteer, batch: _RegistryBatch, now: datetime
    ) -> Volunteer:
        current = batch.volunteers.get(item.id)
        if current is None:
            raise NotFound(f"No volunteer {item.id}.")
        changes = dict(item.changes)
        if set(PLACE_FIELDS) & set(changes):
            where = {k: getattr(current, k) for k in PLACE_FIELDS} | {
                k: v for k, v in changes.items() if k in PLACE_FIELDS
            }
            if "compound" in changes and not {"lat", "lng"} & set(changes):
                where["lat"] = where["lng"] = None  # moved: the new compound's point
            lat, lng = self.places.locate(
                where["community"], where["compound"], where["lat"], where["lng"]
            )
            changes |= {
                "community": where["community"],
                "compound": where["compound"],
                "lat": lat,
                "lng": lng,
            }
        vol = copy.deepcopy(current)
        vol.change(changes, now)
        batch.volunteers.keep(vol)
        batch.events += registry_events(current, vol, now)
        return vol

    def _captain(self, captain: str | None, skill: str, batch: _RegistryBatch) -> None:
        """The captain must be an active volunteer with the squad's skill."""
        if captain is None:
            return
        vol = batch.volunteers.get(captain)
        if vol is None or not vol.active:
            raise Invalid("captain_id", f"Unknown or inactive volunteer {captain!r}.")
        if skill not in vol.skills:
            raise Invalid("captain_id", f"The captain must have the squad's skill {skill!r}.")

    def _new_squad(self, item: NewSquad, sid: str, batch: _RegistryBatch, now: datetime) -> Squad:
        self._captain(item.fields.get("captain_id"), item.fields["skill"], batch)
        if sid in batch.squads:
            raise Conflict("already_exists", f"Squad {sid} exists.")
        squad = Squad.from_doc({**item.fields, "_id": sid, "created_at": now})
        batch.squads.keep(squad, new=True)
        return squad

    def _edit_squad(self, item: EditSquad, batch: _RegistryBatch) -> Squad:
        current = batch.squads.get(item.id)
        if current is None:
            raise NotFound(f"No squad {item.id}.")
        refuse_nulls(item.changes, ("name",))
        if "captain_id" in item.changes:
            self._captain(item.changes["captain_id"], current.skill, batch)
        if not item.changes:
            return current
        squad = copy.deepcopy(current)
        squad.change(item.changes)
        batch.squads.keep(squad)
        return squad

    def _edit_brigade(self, item: EditBrigade, batch: _RegistryBatch) -> Brigade:
        changes = {k: v for k, v in item.changes.items() if v is not None}
        brigade = copy.deepcopy(batch.brigade) if batch.brigade else Brigade()
        if changes:
            brigade.change(changes)
            batch.brigade = brigade
            batch.brigade_changed = True
        return brigade

    # — HTTP —

    async def edit(self, item: RegistryInput, deadline: float | None) -> RegistryRecord:
        """A registry edit, committed with concurrent ones: the record as it is now, or
        the rules' refusal."""
        return await self.edits.submit(item, deadline=deadline)

    # — reads —

    async def volunteer(self, vid: str) -> Volunteer | None:
        """One volunteer."""
        return await self.store.get_volunteer(vid)

    async def volunteers(self, **filters: Any) -> list[Volunteer]:
        """Volunteers matching the filters given (see ``VolunteerStore.list_volunteers``)."""
        return await self.store.list_volunteers(**filters)

    async def hours_of(self, vid: str) -> HoursSummary:
        """One volunteer's hours (recent: the fairness window)."""
        since = self.clock() - timedelta(days=self.settings.fairness_window_days)
        return await self.store.hours_of(vid, since)

    async def squads(self) -> list[tuple[Squad, list[Volunteer]]]:
        """Every squad with its members (active volunteers with its skill, by id)."""
        squads = await self.store.list_squads()
        members = await self.store.active_members(s.skill for s in squads)
        return [(s, [v for v in members if s.skill in v.skills]) for s in squads]

    async def squad(self, squad_id: str) -> tuple[Squad, list[Volunteer]] | None:
        """One squad with its members."""
        squad = await self.store.get_squad(squad_id)
        if squad is None:
            return None
        return squad, await self.store.active_members([squad.skill])

    async def members(self, squad: Squad) -> list[Volunteer]:
        """A squad's members."""
        return await self.store.active_members([squad.skill])

    async def leaderboard(self, since: datetime | None) -> list[tuple[Squad, SkillHours]]:
        """Every squad with the hours of its skill (since ``since``)."""
        by_skill = await self.store.hours_by_skill(since)
        squads = await self.store.list_squads()
        return [(s, by_skill.get(s.skill, SkillHours(0.0, 0, 0))) for s in squads]

    async def brigade(self) -> tuple[Brigade, list[tuple[Squad, list[Volunteer]]], int]:
        """The brigade, its squads with their members, and how many volunteers are active."""
        brigade = await self.store.get_brigade()
        squads = await self.squads()
        active, _open, _capacity = await self.store.utilisation()
        return brigade or Brigade(), squads, active


async def _none() -> None:
    return None


# — the service —


class VolunteerService:
    """Volunteer's use cases and what feeds them: case events, fired deadlines, the seed."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: VolunteerStore,
        settings: VolunteerSettings,
        places: Places,
        metrics: VolunteerMetrics,
        clock: Clock = now_utc,
    ) -> None:
        self.rt = rt
        self.store = store
        self.settings = settings
        self.clock = clock
        self.tasks = TaskWalk(rt, store, settings, places, metrics, clock)
        self.care = CareVisits(rt, store, settings, places, metrics, clock)
        self.registry = Registry(rt, store, settings, places, clock)

    async def prepare(self) -> None:
        """At start-up, before anything consumes: volunteers' recent hours are filled in
        from the hours once, for a database from before them or a longer fairness window."""
        days = recent_hours_days(self.settings)
        if filled := await self.store.ensure_recent_hours(days, self.clock()):
            log.info("recent hours filled in", extra={"volunteers": filled, "days": days})

    async def on_cases(self, envs: Sequence[Envelope]) -> Decision[None]:
        """``tongxin.cases.v1``: ``case.routed`` needing volunteers opens and offers a task;
        ``case.resolved`` / ``case.closed`` cancel a task still being offered. A payload that
        does not parse is refused (parked on the DLQ with why)."""
        inputs: list[TaskInput | Exception] = []
        for env in envs:
            try:
                inputs.append(self.tasks.case_input(env))
            except ValidationError as exc:
                inputs.append(InvalidEvent(f"{env.type}: {exc}"))
        valid = [i for i in inputs if not isinstance(i, Exception)]
        decided = await self.tasks.decide(valid) if valid else Decision[Task | None]()
        return events_only(inputs, decided)

    async def on_deadlines(self, docs: Sequence[Doc]) -> Decision[None]:
        """Due deadlines: an offer's accept deadline (→ the next candidate), a care visit
        falling due (→ the visit and the next one), a visit's window passing (→ overdue).
        The task and care parts of the batch are decided side by side, committed together."""
        task_at: list[int] = []
        care_at: list[int] = []
        task_inputs: list[TaskInput] = []
        care_inputs: list[CareInput] = []
        out: Decision[None] = Decision()
        for n, doc in enumerate(docs):
            kind = doc.get("kind")
            if kind == OFFER_EXPIRY:
                payload = doc.get("payload") or {}
                task_at.append(n)
                task_inputs.append(Expire(str(payload.get("task_id", "")), payload.get("attempt")))
            elif kind in (CARE_GENERATE, CARE_OVERDUE):
                care_at.append(n)
                care_inputs.append(self.care.deadline_input(doc))
            else:
                out.refuse(n, UnknownDeadline(f"no handler for deadline kind {kind!r}"))
        tasks, care = await asyncio.gather(
            self.tasks.decide(task_inputs) if task_inputs else _no_decision(),
            self.care.decide(care_inputs) if care_inputs else _no_decision(),
        )
        for positions, decided in ((task_at, tasks), (care_at, care)):
            out.effects.extend(decided.effects)
            for j, n in enumerate(positions):
                outcome = decided.outcomes[j]
                if isinstance(outcome, Exception):
                    out.refuse(n, outcome)
                else:
                    out.done(n, None)
        return out

    async def seed(self, raw: Mapping[str, Any], recipients: Sequence[Mapping[str, Any]]) -> int:
        """Store the seed volunteers, squads, brigade and care recipients not there yet
        (never overwrites edits); how many were added."""
        now = self.clock()
        volunteers = [
            Volunteer.from_doc(
                {
                    **{k: x for k, x in v.items() if k != "id"},
                    "_id": v["id"],
                    "active": v.get("active", True),
                    "created_at": now,
                }
            )
            for v in raw.get("volunteers", [])
        ]
        squads = [
            Squad.from_doc(
                {**{k: x for k, x in s.items() if k != "id"}, "_id": s["id"], "created_at": now}
            )
            for s in raw.get("squads", [])
        ]
        brigade = Brigade.from_doc(raw["brigade"]) if raw.get("brigade") else None
        added = await self.store.seed(volunteers, squads, brigade)
        registrations: list[CareInput] = []
        for r in recipients:
            if not r.get("consent"):
                log.warning("seed recipient without consent skipped", extra={"id": r["id"]})
                continue
            fields = {k: v for k, v in r.items() if k not in ("id", "_comment")}
            fields.setdefault("assigned_volunteers", [])
            fields.setdefault("cadence_days", 7)
            registrations.append(Register(fields, id=str(r["id"]), trusted=True))
        if registrations:
            outcomes = await self.rt.uow.run(registrations, self.care.decide)
            added += sum(1 for o in outcomes if not isinstance(o, Exception))
        return added

    async def gauges(self) -> tuple[int, int, int, int]:
        """(active volunteers, open tasks, their total capacity, overdue visits)."""
        active, open_tasks, capacity = await self.store.utilisation()
        return active, open_tasks, capacity, await self.store.count_overdue()


async def _no_decision() -> Decision[Any]:
    return Decision()
