"""What intake does with consumed events: keep the resident-facing timeline, and accept
requests other platforms publish on the inbound topic."""

from __future__ import annotations

import logging
from datetime import timedelta

from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from services.intake.domain.requests import InboundRequest, public_status
from services.intake.domain.timeline import State, Status, apply_event
from services.intake.service import IntakeService, Invalid, pydantic_errors
from services.intake.store import RequestStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import Event, parse_event
from tongxin.contracts.topics import PUBLIC_STATUS
from tongxin.runtime.consumer import PermanentError
from tongxin.runtime.mongo import Doc, handle_once

log = logging.getLogger(__name__)


class _Stale(Exception):
    """The request changed between read and write inside the transaction; try again."""


class TimelineHandlers:
    """Updates a request's status and timeline from case and task events."""

    consumer = "intake.timeline"

    def __init__(self, service: IntakeService) -> None:
        self.service = service
        self.rt = service.rt
        self.store: RequestStore = service.store
        self.feedback_window = timedelta(seconds=service.settings.feedback_window_scaled_s)

    async def on_event(self, env: Envelope) -> None:
        """Any ``case.*`` or ``task.*`` event: a timeline entry, maybe a status change."""
        try:
            event = parse_event(env.type, env.data)
        except ValidationError as exc:
            # the producer's bug, not a passing fault: retrying cannot help
            raise PermanentError(
                f"invalid {env.type}: {exc.error_count()} error(s): {exc}"
            ) from exc
        if event is None:
            return
        parsed: Event = event

        async def apply(session: AsyncClientSession) -> None:
            await self._apply(session, env, parsed)

        for _ in range(10):
            try:
                await handle_once(self.rt.mongo, self.rt.db, self.consumer, env.id, apply)
                break
            except _Stale:
                continue
        else:
            raise RuntimeError(f"request {event.request_id} kept changing; will retry")
        self.rt.relay.nudge()

    async def _apply(self, session: AsyncClientSession, env: Envelope, event: Event) -> None:
        doc = await self.store.get(event.request_id, session)
        if doc is None:
            return  # not one of ours (a care visit's key, or another deployment's request)
        at = getattr(event, "at", None) or env.time
        state = State(
            status=Status(doc.get("status", Status.SUBMITTED.value)),
            resolution_round=int(doc.get("resolution_round") or 0),
        )
        change = apply_event(
            state,
            event,
            event_id=env.id,
            at=at,
            unit_names=self.service.unit_names,
            feedback_window=self.feedback_window,
        )
        if change is None:
            return
        fields: Doc = dict(change.fields)
        if change.status is not None:
            fields["status"] = change.status.value
            fields["status_changed_at"] = at
        rev = doc.get("rev")
        flt: Doc = {"_id": doc["_id"], "rev": rev if rev is not None else {"$exists": False}}
        if not await self.store.update(session, flt, fields, {"timeline": change.entry}):
            raise _Stale
        if change.status is not None:
            merged = {**doc, **fields}
            status = public_status(
                merged, change.status.value, change.public_note, at, doc.get("status")
            )
            await self.rt.outbox.add(
                session, PUBLIC_STATUS.name, Envelope.wrap(status, self.rt.source)
            )


class InboundHandlers:
    """Consumes ``tongxin.inbound.requests.v1``: other platforms' submissions."""

    def __init__(self, service: IntakeService) -> None:
        self.service = service

    async def on_inbound_request(self, env: Envelope) -> None:
        """An inbound ``request.submitted``: validated like HTTP, once per (source, id).

        Invalid ones raise :class:`PermanentError`: parked on the DLQ with the reason at
        once, and the partition moves on.
        """
        svc = self.service
        try:
            body = InboundRequest.model_validate(env.data)
            attrs = svc.check(body, prefix=("data",))
        except ValidationError as exc:
            svc.metrics.rejected.labels("inbound").inc()
            raise PermanentError(str(Invalid(pydantic_errors(exc, ("data",))))) from exc
        except Invalid as exc:
            svc.metrics.rejected.labels("inbound").inc()
            raise PermanentError(str(exc)) from exc
        request_id = await svc.submit_external(body, attrs, env.source, env.id)
        log.info(
            "inbound request",
            extra={
                "source": env.source,
                "ce_id": env.id,
                "request_id": request_id,
                "duplicate": request_id is None,
            },
        )
