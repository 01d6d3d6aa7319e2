"""What notify does with consumed events: plan deliveries once, then send them.

Planning (who, which channel, the rendered message, deferral for quiet hours) happens in
one transaction with the event id (``handle_once``), so a redelivered event plans nothing
new; sending happens after, per delivery, at most once each. When a delivery fails for good
the record is parked on the DLQ (``tongxin dlq replay`` tries its failed deliveries again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession

from services.notify.channels import notification_id
from services.notify.delivery import Dispatcher
from services.notify.domain.directory import STAFF_KINDS
from services.notify.domain.plan import Planned, Planner, Preference
from services.notify.domain.quiet import QuietHours
from services.notify.domain.rules import Facts
from services.notify.domain.templates import TemplateError
from services.notify.metrics import NotifyMetrics
from services.notify.store import DEFERRED, PENDING, NotifyStore, delivery_id
from tongxin.contracts.enums import NotifyChannel, Urgency
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import (
    CaseEscalated,
    CaseRouted,
    Event,
    RequestSubmitted,
    parse_ce_type,
    parse_event,
)
from tongxin.runtime.consumer import PermanentError
from tongxin.runtime.mongo import Doc, handle_once, in_transaction
from tongxin.runtime.scheduler import Complete, DeadlineStore
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

CONSUMER = "notify.events"
RELEASE = "notify.release"  # deadline kind: a deferred delivery's quiet hours are over


def preference_from_doc(doc: Mapping[str, Any]) -> Preference:
    """A stored preference as the planner takes it."""
    quiet = doc.get("quiet_hours")
    return Preference(
        channels=tuple(NotifyChannel(c) for c in doc.get("channels", [])),
        quiet_hours=QuietHours.parse(quiet["start"], quiet["end"]) if quiet else None,
    )


class NotifyHandlers:
    """Consumes requests, cases and volunteer-task events."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: NotifyStore,
        planner: Planner,
        dispatcher: Dispatcher,
        deadlines: DeadlineStore,
        metrics: NotifyMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self.store = store
        self.planner = planner
        self.dispatcher = dispatcher
        self.deadlines = deadlines
        self.metrics = metrics
        self.clock = clock

    async def on_event(self, env: Envelope) -> None:
        """Any consumed event: keep what later messages need, plan, then deliver."""
        parsed = parse_ce_type(env.type)
        if parsed is None:
            return
        event_type = parsed[0]
        try:
            event = parse_event(env.type, env.data)
        except ValidationError as exc:
            raise PermanentError(f"invalid {event_type}: {exc.errors()[:3]}") from exc
        if event is None:
            return
        planned: list[Planned] = []
        docs: list[Doc] = []

        async def txn(session: AsyncClientSession) -> None:
            nonlocal planned, docs
            planned, docs = await self._plan(session, env, event_type, event)

        try:
            fresh = await handle_once(self.rt.mongo, self.rt.db, CONSUMER, env.id, txn)
        except TemplateError as exc:
            raise PermanentError(str(exc)) from exc
        if fresh:
            for p in planned:
                status = "deferred" if p.not_before else "planned"
                self.metrics.notifications.labels(p.channel.value, status).inc()
            await self.dispatcher.console_committed(docs)
            failed = await self.dispatcher.dispatch_planned(docs)
        else:
            # a redelivery: resume what a crash interrupted; a DLQ replay retries failures
            failed = await self.dispatcher.dispatch_event(env.id, reopen_failed=True)
        if failed:
            what = ", ".join(f"{d['recipient']}/{d['channel']}: {d['last_error']}" for d in failed)
            raise PermanentError(f"{len(failed)} deliveries failed: {what}"[:1500])

    async def _plan(
        self, session: AsyncClientSession, env: Envelope, event_type: str, event: Event
    ) -> tuple[list[Planned], list[Doc]]:
        """Plan and record the event's deliveries (console ones already sent)."""
        data = event.model_dump(mode="python")
        request_id = event.request_id
        contact: Doc | None = None
        case: Doc | None = None
        if isinstance(event, RequestSubmitted):
            contact = {
                "name": event.submitter.name,
                "phone": event.submitter.phone,
                "urgency": event.urgency.value,
                "community": event.community,
            }
            await self.store.save_contact(session, request_id, contact)
        elif isinstance(event, CaseRouted):
            case = {
                "request_id": request_id,
                "units": list(event.units),
                "community": event.community,
                "tier": event.tier.value,
            }
            await self.store.save_case(session, event.case_id, case)
            case = {**case, "case_id": event.case_id}  # what was just written: not read back
        elif isinstance(event, CaseEscalated):
            await self.store.add_case_unit(session, event.case_id, event.to_unit)
        if contact is None:
            contact = await self.store.contact(session, request_id)
        case_id = data.get("case_id")
        if case is None and case_id:
            case = await self.store.case(session, str(case_id))
            if case is not None:
                case = {k: v for k, v in case.items() if k not in ("_id", "updated_at")}
                case["case_id"] = case_id
        facts = Facts(event_type, data, case, contact)
        ids = self.planner.recipient_ids(facts)
        prefs = {
            rid: preference_from_doc(doc)
            for rid, doc in (await self.store.preferences_of(session, ids)).items()
        }
        emergency = (contact or {}).get("urgency") == Urgency.EMERGENCY.value
        now = self.clock()
        planned = self.planner.plan(facts, prefs, now, emergency=emergency)
        docs = [self._doc(env, event_type, data, p, now) for p in planned]
        await self.dispatcher.record_console(session, docs)
        await self.store.insert_deliveries(session, docs)
        for doc in docs:
            if doc["status"] == DEFERRED:
                # a new delivery's deadline: inserted with the transaction's other writes
                await self.deadlines.add(
                    session, f"release:{doc['_id']}", RELEASE, doc["not_before"], doc["_id"]
                )
        return planned, docs

    def _doc(
        self, env: Envelope, event_type: str, data: Mapping[str, Any], p: Planned, now: datetime
    ) -> Doc:
        did = delivery_id(env.id, p.recipient.id, p.channel.value)
        # submitters' phone numbers stay here, in notify's own database, and nowhere else
        address = {k: v for k, v in p.recipient.addresses.items()}
        return {
            "_id": did,
            "notification_id": notification_id(did),
            "event_id": env.id,
            "event_type": event_type,
            "request_id": env.key or str(data.get("request_id", "")),
            "case_id": data.get("case_id"),
            "recipient": p.recipient.id,
            "recipient_name": p.recipient.name,
            "recipient_kind": p.recipient.kind.value,
            "staff": p.recipient.kind in STAFF_KINDS,
            "channel": p.channel.value,
            "template": p.template,
            "critical": p.critical,
            "fallback": p.fallback,
            "markdown": p.channel in (NotifyChannel.WECOM, NotifyChannel.DINGTALK)
            and self.planner.templates.has_markdown(p.template),
            "message": p.message.as_doc(),
            "address": address,
            "status": DEFERRED if p.not_before else PENDING,
            "not_before": p.not_before.astimezone(UTC) if p.not_before else None,
            # left to this event's handler until then; afterwards the resume sweep may take it
            "lease_until": now + self.dispatcher.lease,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }

    async def on_release(self, doc: Doc, complete: Complete) -> None:
        """Deadline: a deferred delivery's quiet hours ended — send it now.

        Raises ``Stopping`` when the process stops first: the deadline stays due and fires
        again (a delivery already past ``deferred`` is skipped then; the sweep resumes it).
        """
        await self.dispatcher.dispatch(str(doc["subject"]), DEFERRED)
        await in_transaction(self.rt.mongo, complete)
