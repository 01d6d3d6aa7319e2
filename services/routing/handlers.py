"""What routing does with consumed events: open a case for each submitted request."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.client_session import AsyncClientSession

from services.routing.domain.classify import ClassifyInput, classify
from services.routing.domain.policy import Policy
from services.routing.store import CaseStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import CaseRouted, RequestSubmitted, RuleFired
from tongxin.contracts.topics import CASES
from tongxin.runtime.mongo import handle_once
from tongxin.runtime.service import ServiceRuntime


def case_id_for(request_id: str) -> str:
    """A case's id is derived from its request's (one case per request)."""
    return f"C-{request_id}"


class IntakeEventHandlers:
    """Consumes ``tongxin.requests.v1``."""

    consumer = "routing.requests"

    def __init__(self, rt: ServiceRuntime, store: CaseStore, policy: Policy) -> None:
        self.rt = rt
        self.store = store
        self.policy = policy

    async def on_request_submitted(self, env: Envelope) -> None:
        """``request.submitted``: classify, open the case with deadlines, emit ``case.routed``."""
        req = RequestSubmitted.model_validate(env.data)
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
            self.policy,
        )
        now = datetime.now(UTC)
        deadlines = self.policy.deadlines[decision.tier]
        case_id = case_id_for(req.request_id)
        event = CaseRouted(
            request_id=req.request_id,
            case_id=case_id,
            tier=decision.tier,
            category=req.category,
            community=req.community,
            compound=req.compound,
            units=decision.units,
            classification=RuleFired(
                rule=decision.rule, reason=decision.reason, inputs=decision.inputs
            ),
            acknowledge_by=now + deadlines.acknowledge,
            resolve_by=now + deadlines.resolve,
            needs_volunteers=decision.needs_volunteers,
            skills=decision.skills,
        )
        out = Envelope.wrap(event, self.rt.source)
        doc = {
            "_id": case_id,
            "request_id": req.request_id,
            "tier": decision.tier.value,
            "category": req.category.value,
            "community": req.community,
            "compound": req.compound,
            "units": decision.units,
            "classification": event.classification.model_dump(),
            "deliberation": decision.deliberation,
            "needs_volunteers": decision.needs_volunteers,
            "skills": [s.value for s in decision.skills],
            "status": "open",
            "opened_at": now,
            "acknowledge_by": event.acknowledge_by,
            "resolve_by": event.resolve_by,
            "history": [{"at": now, "event": "case.routed", "event_id": out.id}],
        }

        async def apply(session: AsyncClientSession) -> None:
            await self.store.insert(session, doc)
            await self.rt.outbox.add(session, CASES.name, out)

        if await handle_once(self.rt.mongo, self.rt.db, self.consumer, env.id, apply):
            self.rt.relay.nudge()
