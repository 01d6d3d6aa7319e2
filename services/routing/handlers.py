"""What routing does with consumed events, department commands and fired deadlines."""

from __future__ import annotations

import logging
from datetime import datetime

from pymongo.asynchronous.client_session import AsyncClientSession

from services.routing.cases import CaseNotFound, CaseService
from services.routing.domain import lifecycle
from services.routing.domain.classify import ClassifyInput, classify
from services.routing.domain.lifecycle import Action, Case, Effects, NotAssigned, TransitionError
from services.routing.store import CaseStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import (
    AcknowledgeCase,
    CaseCommand,
    ProgressCase,
    RequestFeedbackGiven,
    RequestSubmitted,
    RequestWithdrawn,
    ResolveCase,
    ReturnCase,
)
from tongxin.runtime.consumer import Handler, PermanentError
from tongxin.runtime.mongo import Doc, in_transaction
from tongxin.runtime.scheduler import Complete, DeadlineHandler

log = logging.getLogger(__name__)


def case_id_for(request_id: str) -> str:
    """A case's id is derived from its request's (one case per request)."""
    return f"C-{request_id}"


class IntakeEventHandlers:
    """Consumes ``tongxin.requests.v1``: submitted, feedback given, withdrawn."""

    consumer = "routing.requests"

    def __init__(self, cases: CaseService, store: CaseStore) -> None:
        self.cases = cases
        self.store = store

    async def on_request_submitted(self, env: Envelope) -> None:
        """``request.submitted``: classify, open the case with deadlines, emit ``case.routed``."""
        req = RequestSubmitted.model_validate(env.data)
        policy = self.cases.policy
        similar = await self.store.count_open_similar(req.compound, req.category.value)
        decision = classify(
            ClassifyInput(
                category=req.category,
                urgency=req.urgency,
                vulnerable=req.vulnerable,
                community=req.community,
                compound=req.compound,
                cross_department=bool(req.attributes.get("cross_department", False)),
                open_similar=similar,
            ),
            policy,
        )
        case, fx = lifecycle.open_case(
            case_id=case_id_for(req.request_id),
            request_id=req.request_id,
            category=req.category,
            community=req.community,
            compound=req.compound,
            decision=decision,
            policy=policy,
            now=self.cases.clock(),
        )
        await self.cases.open(case, fx, consumer=self.consumer, event_id=env.id)

    async def _case_of(self, request_id: str, case_id: str | None) -> str | None:
        if case_id:
            return case_id
        doc = await self.store.by_request(request_id)
        return None if doc is None else str(doc["_id"])

    async def on_feedback_given(self, env: Envelope) -> None:
        """``request.feedback_given``: satisfied closes, dissatisfied reopens (回访)."""
        ev = RequestFeedbackGiven.model_validate(env.data)
        case_id = await self._case_of(ev.request_id, ev.case_id)
        if case_id is None:
            log.warning("feedback for a request without a case", extra={"request": ev.request_id})
            return
        policy = self.cases.policy

        def op(case: Case, now: datetime) -> Effects:
            return lifecycle.give_feedback(case, ev.rating, now, policy, ev.comment)

        try:
            await self.cases.apply(case_id, op, consumer=self.consumer, event_id=env.id)
        except CaseNotFound:
            log.warning("feedback for an unknown case", extra={"case": case_id})

    async def on_withdrawn(self, env: Envelope) -> None:
        """``request.withdrawn``: the case closes and its deadlines stop."""
        ev = RequestWithdrawn.model_validate(env.data)
        case_id = await self._case_of(ev.request_id, None)
        if case_id is None:
            log.warning("withdrawal of a request without a case", extra={"request": ev.request_id})
            return

        def op(case: Case, now: datetime) -> Effects:
            return lifecycle.withdraw(case, now, ev.reason)

        await self.cases.apply(case_id, op, consumer=self.consumer, event_id=env.id)


COMMAND_ACTIONS: dict[str, tuple[type[CaseCommand], Action]] = {
    AcknowledgeCase.ce_type(): (AcknowledgeCase, Action.ACKNOWLEDGE),
    ProgressCase.ce_type(): (ProgressCase, Action.PROGRESS),
    ResolveCase.ce_type(): (ResolveCase, Action.RESOLVE),
    ReturnCase.ce_type(): (ReturnCase, Action.RETURN),
}


class CommandHandlers:
    """Consumes ``tongxin.inbound.case-commands.v1`` from department systems.

    A command is refused — parked on the DLQ at once with the reason — when the case is
    unknown, the unit is not assigned to it, or the transition is not allowed.
    """

    consumer = "routing.commands"

    def __init__(self, cases: CaseService) -> None:
        self.cases = cases

    def handlers(self) -> dict[str, Handler]:
        """Handlers by CloudEvents type."""

        def bind(ce_type: str) -> Handler:
            async def handle(env: Envelope) -> None:
                await self.on_command(ce_type, env)

            return handle

        return {t: bind(t) for t in COMMAND_ACTIONS}

    async def on_command(self, ce_type: str, env: Envelope) -> None:
        """``case.acknowledge|progress|resolve|return``: act as the command's unit."""
        model, action = COMMAND_ACTIONS[ce_type]
        try:
            cmd = model.model_validate(env.data)
        except ValueError as exc:
            raise PermanentError(f"invalid command: {exc}") from exc
        policy = self.cases.policy
        reason = cmd.reason if isinstance(cmd, ReturnCase) else None

        def op(case: Case, now: datetime) -> Effects:
            if case.request_id != cmd.request_id:
                raise PermanentError(f"case {cmd.case_id} is not for request {cmd.request_id}")
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

        try:
            await self.cases.apply(cmd.case_id, op, consumer=self.consumer, event_id=env.id)
        except CaseNotFound as exc:
            raise PermanentError(f"unknown case {cmd.case_id}") from exc
        except NotAssigned as exc:
            raise PermanentError(f"refused: {exc}") from exc
        except TransitionError as exc:
            raise PermanentError(
                f"refused: {exc}; allowed now: {', '.join(exc.allowed) or 'none'}"
            ) from exc


class DeadlineHandlers:
    """Fires routing's durable deadlines (acknowledge/report-in, resolve, feedback)."""

    def __init__(self, cases: CaseService) -> None:
        self.cases = cases

    def handlers(self) -> dict[str, DeadlineHandler]:
        """Handlers by deadline kind."""

        def bind(kind: str) -> DeadlineHandler:
            async def handle(doc: Doc, complete: Complete) -> None:
                await self.on_deadline(kind, doc, complete)

            return handle

        return {k: bind(k) for k in (lifecycle.ACK, lifecycle.RESOLVE_DUE, lifecycle.FEEDBACK_DUE)}

    async def on_deadline(self, kind: str, doc: Doc, complete: Complete) -> None:
        """A deadline fell due: escalate, mark overdue or close — with ``complete`` atomically."""
        policy = self.cases.policy
        deadline_id = str(doc["_id"])

        def op(case: Case, now: datetime) -> Effects:
            return lifecycle.on_deadline(case, kind, deadline_id, policy, now)

        try:
            await self.cases.apply(str(doc["subject"]), op, extra=complete)
        except CaseNotFound:

            async def done(session: AsyncClientSession) -> None:
                await complete(session)

            await in_transaction(self.cases.rt.mongo, done)
