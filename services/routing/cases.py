"""Applies case operations: the case, its deadlines and its events in one transaction.

HTTP actions, case commands, intake's events and fired deadlines all come through
:meth:`CaseService.apply`, so every ``case.*`` event leaves through the outbox in the
transaction that changed the case.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pymongo.asynchronous.client_session import AsyncClientSession

from services.routing.domain.lifecycle import Case, Effects
from services.routing.domain.policy import Policy
from services.routing.metrics import RoutingMetrics
from services.routing.store import CaseStore, StaleCase
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import CaseEscalated, CaseRouted
from tongxin.contracts.topics import CASES
from tongxin.runtime.mongo import AlreadyHandled, in_transaction, record_event_once
from tongxin.runtime.scheduler import DeadlineStore
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

Operation = Callable[[Case, datetime], Effects]
Extra = Callable[[AsyncClientSession], Awaitable[None]]


class CaseNotFound(LookupError):
    """No such case."""


class CaseService:
    """The one place that writes cases."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: CaseStore,
        deadlines: DeadlineStore,
        policy: Policy,
        metrics: RoutingMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self.store = store
        self.deadlines = deadlines
        self.policy = policy
        self.metrics = metrics
        self.clock = clock

    async def _effects(
        self, session: AsyncClientSession, case: Case, fx: Effects, *, new: bool = False
    ) -> None:
        for c in fx.cancel:
            await self.deadlines.cancel(session, c)
        # a new case's deadlines cannot exist yet: inserted with the case, not upserted
        schedule = self.deadlines.add if new else self.deadlines.schedule
        for d in fx.schedule:
            await schedule(session, d.id, d.kind, d.due_at, case.id, d.payload)
        for ev in fx.events:
            await self.rt.outbox.add(session, CASES.name, Envelope.wrap(ev, self.rt.source))

    def _observe(self, fx: Effects) -> None:
        """Metrics of a committed operation."""
        for tier, level in fx.breaches:
            self.metrics.breaches.labels(tier, level).inc()
        for tier, seconds in fx.report_in_s:
            self.metrics.report_in.labels(tier).observe(seconds)
        for ev in fx.events:
            self.metrics.transitions.labels(ev.event_type).inc()
            if isinstance(ev, CaseEscalated):
                self.metrics.escalations.labels(ev.to_level, ev.trigger).inc()
            elif isinstance(ev, CaseRouted):
                self.metrics.routed.labels(ev.tier.value, ev.classification.rule).inc()
        if fx.events:
            self.rt.relay.nudge()

    async def open(self, case: Case, fx: Effects, *, consumer: str, event_id: str) -> bool:
        """Insert a new case with its effects, once per consumed event."""

        async def txn(session: AsyncClientSession) -> None:
            await record_event_once(self.rt.db, session, consumer, event_id)
            await self.store.insert(session, case)
            await self._effects(session, case, fx, new=True)

        try:
            await in_transaction(self.rt.mongo, txn)
        except AlreadyHandled:
            return False
        self._observe(fx)
        return True

    async def apply(
        self,
        case_id: str,
        op: Operation,
        *,
        consumer: str | None = None,
        event_id: str | None = None,
        extra: Extra | None = None,
        attempts: int = 5,
    ) -> tuple[Case, Effects] | None:
        """Load, change and save a case atomically; None when ``event_id`` was handled.

        Domain errors raised by ``op`` abort the transaction: nothing changes.
        ``extra`` runs in the same transaction (a fired deadline's ``complete``).
        """
        result: list[tuple[Case, Effects]] = []
        for attempt in range(1, attempts + 1):

            async def txn(session: AsyncClientSession) -> None:
                result.clear()
                if consumer and event_id:
                    await record_event_once(self.rt.db, session, consumer, event_id)
                case = await self.store.load(session, case_id)
                if case is None:
                    raise CaseNotFound(case_id)
                fx = op(case, self.clock())
                await self.store.save(session, case)
                await self._effects(session, case, fx)
                if extra is not None:
                    await extra(session)
                result.append((case, fx))

            try:
                await in_transaction(self.rt.mongo, txn)
            except AlreadyHandled:
                return None
            except StaleCase:
                if attempt == attempts:
                    raise
                log.info("case changed concurrently; retrying", extra={"case": case_id})
                continue
            case, fx = result[0]
            self._observe(fx)
            return case, fx
        return None  # pragma: no cover — the loop returns or raises
