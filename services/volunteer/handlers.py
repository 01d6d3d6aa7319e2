"""What volunteer does with consumed events: open a task for cases that need help, and stop
walking the list when a case no longer needs it."""

from __future__ import annotations

from services.volunteer.walk import TaskWalk
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import CaseClosed, CaseResolved, CaseRouted


class CaseEventHandlers:
    """Consumes ``tongxin.cases.v1``."""

    consumer = "volunteer.cases"

    def __init__(self, walk: TaskWalk) -> None:
        self.walk = walk

    async def on_case_routed(self, env: Envelope) -> None:
        """``case.routed`` needing volunteers: offer the best candidate, or report none."""
        case = CaseRouted.model_validate(env.data)
        if not case.needs_volunteers or not case.skills:
            return
        await self.walk.open_for_case(env, case, self.consumer)

    async def on_case_resolved(self, env: Envelope) -> None:
        """``case.resolved``: a task still being offered is cancelled."""
        ev = CaseResolved.model_validate(env.data)
        await self.walk.case_ended(env, ev.case_id, "resolved", self.consumer)

    async def on_case_closed(self, env: Envelope) -> None:
        """``case.closed``: a task still being offered is cancelled."""
        ev = CaseClosed.model_validate(env.data)
        await self.walk.case_ended(env, ev.case_id, "closed", self.consumer)
