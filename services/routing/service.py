"""Routing's use cases: every change of a case, whoever asks, in batches.

Consumed requests and case commands, fired deadlines and HTTP actions all become
:class:`Change` s — a case id and a pure operation of ``domain.lifecycle`` — decided by
:meth:`RoutingService.decide` on cases loaded once per batch. Each operation runs on the
case as the previous ones in the batch left it; a case is written once per batch,
conditional on the version it was read at (another replica or request in between: the
batch is decided again). A refused operation (``TransitionError``, ``NotAssigned``, an
unknown case) leaves its case as it was and refuses only its own input.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from services.routing.domain import lifecycle
from services.routing.domain.classify import ClassifyInput, classify
from services.routing.domain.lifecycle import (
    OPEN_STATES,
    Action,
    Case,
    NotAssigned,
    TransitionError,
)
from services.routing.domain.lifecycle import Effects as CaseEffects
from services.routing.domain.policy import Policy
from services.routing.metrics import RoutingMetrics
from services.routing.store import CaseStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import (
    AcknowledgeCase,
    CaseCommand,
    CaseEscalated,
    CaseRouted,
    ProgressCase,
    RequestFeedbackGiven,
    RequestSubmitted,
    RequestWithdrawn,
    ResolveCase,
    ReturnCase,
)
from tongxin.contracts.topics import CASES
from tongxin.runtime.mongo import Doc
from tongxin.runtime.scheduler import add, cancel, schedule
from tongxin.runtime.service import ServiceRuntime
from tongxin.runtime.uow import Batcher, Decision, Effects, Refused, events_only

log = logging.getLogger(__name__)

Operation = Callable[[Case, datetime], CaseEffects]


def case_id_for(request_id: str) -> str:
    """A case's id is derived from its request's (one case per request)."""
    return f"C-{request_id}"


class CaseNotFound(Refused):
    """No such case."""


class CommandRefused(Refused):
    """A department system's command that cannot apply (parked on the DLQ with why)."""


@dataclass
class Change:
    """One operation on one case. ``extra`` adds writes of its own to the batch when the
    operation succeeds (a meeting's minutes); ``missing_ok``: an unknown case is no error
    (a deadline whose case is gone)."""

    case_id: str
    op: Operation
    extra: Callable[[Effects, Case], None] | None = None
    missing_ok: bool = False


@dataclass
class Open:
    """A new request: classify it and open its case."""

    request: RequestSubmitted


Input = Change | Open


@dataclass
class _Batch:
    """The cases of one batch as the operations so far left them."""

    loaded: dict[str, Case]  # as stored (their version is the condition of the write)
    cases: dict[str, Case] = field(default_factory=dict)  # current state
    new: set[str] = field(default_factory=set)  # opened in this batch: inserted
    touched: list[str] = field(default_factory=list)  # changed: written, in order
    observed: list[CaseEffects] = field(default_factory=list)  # metrics after the commit


COMMAND_ACTIONS: dict[str, tuple[type[CaseCommand], Action]] = {
    AcknowledgeCase.ce_type(): (AcknowledgeCase, Action.ACKNOWLEDGE),
    ProgressCase.ce_type(): (ProgressCase, Action.PROGRESS),
    ResolveCase.ce_type(): (ResolveCase, Action.RESOLVE),
    ReturnCase.ce_type(): (ReturnCase, Action.RETURN),
}


class RoutingService:
    """The one place that decides and writes cases."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: CaseStore,
        policy: Policy,
        metrics: RoutingMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self.store = store
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.actions: Batcher[Input, Case | None] = rt.batcher("case-actions", self.decide)

    async def prepare(self) -> None:
        """At start-up, before anything consumes: the open-cases counters of a database
        from before them are counted once."""
        if places := await self.store.ensure_open_counts():
            log.info("open cases counted per place", extra={"places": places})

    # — the one decision —

    async def decide(self, inputs: Sequence[Input]) -> Decision[Case | None]:
        """Load the batch's cases, apply each input in order, write each changed case once."""
        ids = [
            i.case_id if isinstance(i, Change) else case_id_for(i.request.request_id)
            for i in inputs
        ]
        loaded = await self.store.load_many(ids)
        batch = _Batch(loaded, {k: copy.deepcopy(v) for k, v in loaded.items()})
        opens = [i.request for i in inputs if isinstance(i, Open)]
        similar = await self.store.open_similar_counts(
            [(r.compound, r.category.value) for r in opens if r.compound]
        )
        decision: Decision[Case | None] = Decision()
        fx = decision.effects
        now = self.clock()
        for n, item in enumerate(inputs):
            case: Case | None
            try:
                if isinstance(item, Open):
                    case = self._open(item.request, batch, similar, fx, now)
                else:
                    case = self._change(item, batch, fx, now)
            except (TransitionError, NotAssigned, Refused) as exc:
                decision.refuse(n, exc)
                continue
            decision.done(n, case)
        for cid in batch.touched:
            case = batch.cases[cid]
            if cid in batch.new:
                self.store.insert(fx, case)
                was_open = False
            else:
                self.store.save(fx, case, batch.loaded[cid].version)
                was_open = batch.loaded[cid].status in OPEN_STATES
            delta = int(case.status in OPEN_STATES) - int(was_open)
            if delta and case.compound:
                self.store.count_open(fx, case.compound, case.category.value, delta)
        observed = batch.observed
        fx.on_commit(lambda: self._observe(observed))
        return decision

    def _open(
        self,
        req: RequestSubmitted,
        batch: _Batch,
        similar: dict[tuple[str, str], int],
        fx: Effects,
        now: datetime,
    ) -> Case:
        cid = case_id_for(req.request_id)
        if cid in batch.cases:  # opened before (another event id for the same request)
            return batch.cases[cid]
        key = (req.compound or "", req.category.value)
        decision = classify(
            ClassifyInput(
                category=req.category,
                urgency=req.urgency,
                vulnerable=req.vulnerable,
                community=req.community,
                compound=req.compound,
                cross_department=bool(req.attributes.get("cross_department", False)),
                open_similar=similar.get(key, 0) if req.compound else 0,
            ),
            self.policy,
        )
        case, cx = lifecycle.open_case(
            case_id=cid,
            request_id=req.request_id,
            category=req.category,
            community=req.community,
            compound=req.compound,
            decision=decision,
            policy=self.policy,
            now=now,
        )
        if req.compound:
            similar[key] = similar.get(key, 0) + 1  # a later request of this batch sees it
        batch.cases[cid] = case
        batch.new.add(cid)
        batch.touched.append(cid)
        self._apply(case, cx, fx, now, new=True)
        batch.observed.append(cx)
        return case

    def _change(self, item: Change, batch: _Batch, fx: Effects, now: datetime) -> Case | None:
        current = batch.cases.get(item.case_id)
        if current is None:
            if item.missing_ok:
                log.warning("no case for this input; nothing to do", extra={"case": item.case_id})
                return None
            raise CaseNotFound(f"unknown case {item.case_id}")
        case = copy.deepcopy(current)  # the operation may fail half-way: keep the last state
        cx = item.op(case, now)
        batch.cases[item.case_id] = case
        if item.case_id not in batch.touched:
            batch.touched.append(item.case_id)
        self._apply(case, cx, fx, now, new=item.case_id in batch.new)
        if item.extra is not None:
            item.extra(fx, case)
        batch.observed.append(cx)
        return case

    def _apply(self, case: Case, cx: CaseEffects, fx: Effects, now: datetime, *, new: bool) -> None:
        """The operation's deadlines and events as writes of the batch."""
        for deadline_id in cx.cancel:
            cancel(fx, deadline_id, now)
        put = add if new else schedule  # a new case's deadlines cannot exist yet: inserts
        for d in cx.schedule:
            put(fx, d.id, d.kind, d.due_at, case.id, d.payload)
        for ev in cx.events:
            fx.emit(CASES.name, Envelope.wrap(ev, self.rt.source))

    def _observe(self, observed: Sequence[CaseEffects]) -> None:
        """Metrics of committed operations."""
        for cx in observed:
            for tier, level in cx.breaches:
                self.metrics.breaches.labels(tier, level).inc()
            for tier, seconds in cx.report_in_s:
                self.metrics.report_in.labels(tier).observe(seconds)
            for ev in cx.events:
                self.metrics.transitions.labels(ev.event_type).inc()
                if isinstance(ev, CaseEscalated):
                    self.metrics.escalations.labels(ev.to_level, ev.trigger).inc()
                elif isinstance(ev, CaseRouted):
                    self.metrics.routed.labels(ev.tier.value, ev.classification.rule).inc()

    # — consumed events —

    async def on_requests(self, envs: Sequence[Envelope]) -> Decision[None]:
        """``tongxin.requests.v1``: a new request opens its case (classified, deadlines,
        ``case.routed``); feedback closes or reopens it (回访); a withdrawal closes it."""
        inputs: list[Input] = []
        for env in envs:
            inputs.append(self._request_input(env))
        return events_only(inputs, await self.decide(inputs))

    def _request_input(self, env: Envelope) -> Input:
        policy = self.policy
        if env.type == RequestSubmitted.ce_type():
            return Open(RequestSubmitted.model_validate(env.data))
        if env.type == RequestFeedbackGiven.ce_type():
            fb = RequestFeedbackGiven.model_validate(env.data)

            def feedback(case: Case, now: datetime) -> CaseEffects:
                return lifecycle.give_feedback(case, fb.rating, now, policy, fb.comment)

            return Change(fb.case_id or case_id_for(fb.request_id), feedback, missing_ok=True)
        wd = RequestWithdrawn.model_validate(env.data)

        def withdraw(case: Case, now: datetime) -> CaseEffects:
            return lifecycle.withdraw(case, now, wd.reason)

        return Change(case_id_for(wd.request_id), withdraw, missing_ok=True)

    async def on_commands(self, envs: Sequence[Envelope]) -> Decision[None]:
        """``tongxin.inbound.case-commands.v1``: a department system acts as its unit. A
        command that cannot apply is refused (parked on the DLQ with the reason)."""
        inputs: list[Input | Exception] = []
        for env in envs:
            try:
                inputs.append(self._command(env))
            except (ValidationError, ValueError) as exc:
                inputs.append(CommandRefused(f"invalid command: {exc}"))
        valid = [i for i in inputs if not isinstance(i, Exception)]
        decided = await self.decide(valid) if valid else Decision[Case | None]()
        return events_only(inputs, decided, _as_command_refusal)

    def _command(self, env: Envelope) -> Change:
        model, action = COMMAND_ACTIONS[env.type]
        cmd = model.model_validate(env.data)
        policy = self.policy
        reason = cmd.reason if isinstance(cmd, ReturnCase) else None

        def op(case: Case, now: datetime) -> CaseEffects:
            if case.request_id != cmd.request_id:
                raise CommandRefused(f"case {cmd.case_id} is not for request {cmd.request_id}")
            return lifecycle.act(
                case,
                action,
                cmd.unit,
                now,
                policy,
                by=cmd.by or cmd.unit,
                note=cmd.note,
                reason=reason,
            )

        return Change(cmd.case_id, op)

    # — fired deadlines —

    async def on_deadlines(self, docs: Sequence[Doc]) -> Decision[None]:
        """Due deadlines: escalate a missed report-in, mark a case overdue, close it when
        the resident did not rate it in time. A deadline of a case that is gone just fires."""
        policy = self.policy
        inputs: list[Input] = []
        for doc in docs:
            kind, deadline_id = str(doc["kind"]), str(doc["_id"])

            def op(
                case: Case, now: datetime, kind: str = kind, did: str = deadline_id
            ) -> CaseEffects:
                return lifecycle.on_deadline(case, kind, did, policy, now)

            inputs.append(Change(str(doc["subject"]), op, missing_ok=True))
        return events_only(inputs, await self.decide(inputs))

    # — HTTP —

    async def act(self, change: Change, deadline: float | None) -> Case:
        """One operation asked for over HTTP, committed with concurrent ones; the case as
        it is now, or the domain's refusal (``TransitionError``, ``NotAssigned``,
        :class:`CaseNotFound`)."""
        case = await self.actions.submit(change, deadline=deadline)
        if case is None:  # only inputs that allow a missing case get here without one
            raise CaseNotFound(f"unknown case {change.case_id}")
        return case


def _as_command_refusal(outcome: Exception) -> Exception:
    """A domain error as the reason a department system's command is parked."""
    if isinstance(outcome, TransitionError):
        allowed = ", ".join(outcome.allowed) or "none"
        return CommandRefused(f"refused: {outcome}; allowed now: {allowed}")
    if isinstance(outcome, NotAssigned):
        return CommandRefused(f"refused: {outcome}")
    return outcome
