"""What intake does with consumed events: keep the resident-facing timeline."""

from __future__ import annotations

from pymongo.asynchronous.client_session import AsyncClientSession

from services.intake.store import RequestStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import CaseRouted
from tongxin.runtime.mongo import handle_once
from tongxin.runtime.service import ServiceRuntime

TIER_NOTES = {
    "routine": "已派至社区即知即办",
    "general": "已派至社区定期速办",
    "major": "已吹哨，相关部门报到办理",
    "special": "已由社工专人办理",
}


class TimelineHandlers:
    """Updates a request's status and timeline from case events."""

    consumer = "intake.timeline"

    def __init__(self, rt: ServiceRuntime, store: RequestStore) -> None:
        self.rt = rt
        self.store = store

    async def on_case_routed(self, env: Envelope) -> None:
        """``case.routed``: the request now has a case, a tier and a deadline."""
        ev = CaseRouted.model_validate(env.data)

        async def apply(session: AsyncClientSession) -> None:
            await self.store.record_case_event(
                session,
                ev.request_id,
                "routed",
                {
                    "at": env.time,
                    "status": "routed",
                    "tier": ev.tier.value,
                    "note": TIER_NOTES.get(ev.tier.value, "已派单"),
                    "event_id": env.id,
                },
                {"case_id": ev.case_id, "tier": ev.tier.value},
            )

        await handle_once(self.rt.mongo, self.rt.db, self.consumer, env.id, apply)
