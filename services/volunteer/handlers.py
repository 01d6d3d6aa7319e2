"""What volunteer does with consumed events: offer a task for cases that need help."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.client_session import AsyncClientSession

from services.volunteer.domain.matching import Need, rank
from services.volunteer.store import VolunteerStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import CaseRouted, Event, TaskOffered, TaskUnmatched
from tongxin.contracts.topics import VOLUNTEER_TASKS
from tongxin.runtime.mongo import Doc, handle_once
from tongxin.runtime.service import ServiceRuntime


def task_id_for(case_id: str) -> str:
    """One task per case; its id derives from the case's."""
    return f"T-{case_id.removeprefix('C-')}"


class CaseEventHandlers:
    """Consumes ``tongxin.cases.v1``."""

    consumer = "volunteer.cases"

    def __init__(self, rt: ServiceRuntime, store: VolunteerStore, accept_window: timedelta) -> None:
        self.rt = rt
        self.store = store
        self.accept_window = accept_window

    async def on_case_routed(self, env: Envelope) -> None:
        """``case.routed`` needing volunteers: offer the best candidate, or report none."""
        case = CaseRouted.model_validate(env.data)
        if not case.needs_volunteers or not case.skills:
            return
        need = Need(skills=tuple(case.skills), community=case.community, compound=case.compound)
        ranked = rank(await self.store.candidates([s.value for s in case.skills]), need)
        now = datetime.now(UTC)
        task_id = task_id_for(case.case_id)
        doc: Doc = {
            "_id": task_id,
            "case_id": case.case_id,
            "request_id": case.request_id,
            "skills": [s.value for s in case.skills],
            "community": case.community,
            "compound": case.compound,
            "offered_at": now,
            "declined_by": [],
        }
        event: Event
        if ranked:
            best = ranked[0]
            accept_by = now + self.accept_window
            event = TaskOffered(
                request_id=case.request_id,
                task_id=task_id,
                case_id=case.case_id,
                volunteer_id=best.candidate.id,
                volunteer_name=best.candidate.name,
                skill=best.skill,
                accept_by=accept_by,
                scores=best.scores,
            )
            doc |= {
                "status": "offered",
                "volunteer_id": best.candidate.id,
                "skill": best.skill.value,
                "accept_by": accept_by,
                "scores": best.scores,
                "ranking": [{"volunteer_id": r.candidate.id, **r.scores} for r in ranked[:10]],
            }
        else:
            event = TaskUnmatched(
                request_id=case.request_id,
                task_id=task_id,
                case_id=case.case_id,
                skills=list(case.skills),
                reason="no active volunteer with the skill and free capacity",
            )
            doc |= {"status": "unmatched", "volunteer_id": None}
        out = Envelope.wrap(event, self.rt.source)
        doc["history"] = [{"at": now, "event": event.event_type, "event_id": out.id}]

        async def apply(session: AsyncClientSession) -> None:
            await self.store.insert_task(session, doc)
            await self.rt.outbox.add(session, VOLUNTEER_TASKS.name, out)

        if await handle_once(self.rt.mongo, self.rt.db, self.consumer, env.id, apply):
            self.rt.relay.nudge()
