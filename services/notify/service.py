"""Notify's use cases: consumed events become deliveries, planned in batches and sent at
most once each; quiet hours end; abandoned deliveries are resumed; recipients set their
preferences. The only caller of the store (its sending part is ``dispatch.py``).

A poll of events is one batch (:meth:`NotifyService.on_events`):

1. planning — one unit of work for the whole batch: what it needs is read once
   (contacts, cases, preferences: one query per collection, ``$in``); the events are
   applied in order on that state in memory (a contact or case an earlier event of the
   batch told is seen by a later one); the planned deliveries, what notify keeps, the
   quiet-hours deadlines and the console deliveries (recorded ``sent`` with their
   ``notification.sent``) commit in one transaction;
2. sending — the ready deliveries of the whole batch go to :class:`Dispatch` (claimed in
   chunks of at most each channel's concurrency, outcomes recorded in batches);
3. the events' outcomes: an event whose deliveries all went out (or were deferred) is done
   — the consumer commits its processed-event mark —; one with a delivery that failed for
   good is refused, so the consumer parks its record on the DLQ unmarked, and ``tongxin
   dlq replay`` brings it back: its failed deliveries are opened again and retried, the
   sent ones are left alone.

A redelivered event that was planned before (the process died before its mark committed)
is not planned again: its open deliveries are sent at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from services.notify.dispatch import Dispatch, Ready, Result, Stopping
from services.notify.domain.delivery import Delivery, DeliveryQuery, Status, Take, planned
from services.notify.domain.directory import Recipient
from services.notify.domain.kept import (
    Contact,
    KnownCase,
    case_after,
    case_id_of,
    closes,
    contact_from,
)
from services.notify.domain.plan import Planned, Planner, Preference, SavedPreference
from services.notify.domain.quiet import QuietHours
from services.notify.domain.rules import Facts
from services.notify.domain.templates import TemplateError
from services.notify.metrics import NotifyMetrics
from services.notify.store import NotifyStore
from tongxin.contracts.enums import NotifyChannel, Urgency
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import Event, parse_ce_type, parse_event
from tongxin.contracts.topics import NOTIFICATIONS
from tongxin.runtime.mongo import Doc
from tongxin.runtime.scheduler import add
from tongxin.runtime.service import ServiceRuntime
from tongxin.runtime.uow import Batcher, Decision, Effects, Refused

log = logging.getLogger(__name__)

RELEASE = "notify.release"  # deadline kind: a deferred delivery's quiet hours are over
MARKDOWN_CHANNELS = frozenset({NotifyChannel.WECOM, NotifyChannel.DINGTALK})


class InvalidEvent(Refused):
    """The event's data does not match its contract model (parked at once)."""


class PlanRefused(Refused):
    """The event's messages cannot be made (a template error): parked with why."""


class DeliveriesFailed(Refused):
    """Deliveries of the event failed after their last attempt: the record is parked; a
    replay tries them again."""


class UnknownRecipient(Exception):
    """Neither the directory nor a kept contact knows this recipient."""


class NoAddress(Exception):
    """The recipient has no address for these channels."""

    def __init__(self, channels: Sequence[NotifyChannel]) -> None:
        super().__init__(", ".join(c.value for c in channels))
        self.channels = list(channels)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A consumed event, parsed."""

    env: Envelope
    event: Event
    event_type: str


@dataclass(frozen=True, slots=True)
class PreferenceChange:
    """A recipient's new channels and quiet hours, and who set them."""

    recipient: str
    preference: Preference
    by: str


@dataclass(frozen=True, slots=True)
class PreferenceInEffect:
    """The channels and quiet hours that apply to a recipient, and where they come from
    (``preference``, ``directory``, ``defaults``)."""

    recipient: str
    channels: tuple[NotifyChannel, ...]
    quiet_hours: QuietHours | None
    source: str
    updated_at: datetime | None = None


@dataclass
class _State:
    """What notify knows while it goes through a batch, as its earlier events left it."""

    contacts: dict[str, Contact]
    cases: dict[str, KnownCase]

    def after(self, ev: Event) -> tuple[Contact | None, KnownCase | None]:
        """The contact and case ``ev`` is planned with (what it tells included)."""
        contact = contact_from(ev) or self.contacts.get(ev.request_id)
        case_id = case_id_of(ev)
        case = case_after(ev, self.cases.get(case_id)) if case_id else None
        return contact, case

    def keep(self, contact: Contact | None, case: KnownCase | None) -> None:
        if contact is not None:
            self.contacts[contact.request_id] = contact
        if case is not None:
            self.cases[case.case_id] = case


@dataclass
class _Planned:
    """What committing a batch's plan sets off (metrics, the console's log lines)."""

    deliveries: list[Delivery] = field(default_factory=list)
    console: list[Delivery] = field(default_factory=list)


def _facts(inc: Incoming, contact: Contact | None, case: KnownCase | None) -> Facts:
    return Facts(
        inc.event_type,
        inc.event.model_dump(mode="python"),
        case.facts() if case else None,
        contact.facts() if contact else None,
    )


class NotifyService:
    """The one place that decides what notify writes."""

    def __init__(
        self,
        rt: ServiceRuntime,
        store: NotifyStore,
        planner: Planner,
        dispatch: Dispatch,
        metrics: NotifyMetrics,
        *,
        lease: timedelta,
        sweep_interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow = rt.uow
        self.source = rt.source
        self.store = store
        self.planner = planner
        self.dispatch = dispatch
        self.metrics = metrics
        self.lease = lease
        self.sweep_interval = sweep_interval
        self.clock = clock
        self.preference_writes: Batcher[PreferenceChange, SavedPreference] = rt.batcher(
            "preferences", self._save_preferences
        )
        self._stop = asyncio.Event()

    # — consumed events —

    async def on_events(self, envs: Sequence[Envelope]) -> Decision[None]:
        """A poll of requests, cases and volunteer-task events: plan the batch's deliveries
        in one unit of work, send them, and refuse (park) the events whose deliveries
        failed for good or whose data is invalid."""
        decision: Decision[None] = Decision()
        incoming: list[Incoming] = []
        where: list[int] = []
        for n, env in enumerate(envs):
            parsed = parse_ce_type(env.type)
            if parsed is None:
                decision.done(n, None)
                continue
            event_type = parsed[0]
            try:
                event = parse_event(env.type, env.data)
            except ValidationError as exc:
                decision.refuse(n, InvalidEvent(f"invalid {event_type}: {exc.errors()[:3]}"))
                continue
            if event is None:  # a version this code does not know
                decision.done(n, None)
                continue
            incoming.append(Incoming(env, event, event_type))
            where.append(n)
        if not incoming:
            return decision
        plans = await self.plan(incoming)
        for p in plans:
            if isinstance(p, Exception) and not isinstance(p, Refused):
                raise p  # the consumer splits the poll around it, retries it, then parks it
        ready = [r for p in plans if not isinstance(p, Exception) for r in p]
        outcomes = {o.delivery.id: o for o in await self.dispatch.send(ready)}
        for n, p in zip(where, plans, strict=True):
            if isinstance(p, Exception):
                decision.refuse(n, p)
                continue
            mine = [outcomes[r.delivery.id] for r in p]
            if any(o.result is Result.STOPPED for o in mine):
                raise Stopping("stopping before the event's deliveries were sent")
            failed = [o for o in mine if o.result is Result.FAILED]
            if failed:
                what = ", ".join(
                    f"{o.delivery.recipient}/{o.delivery.channel.value}: {o.error}" for o in failed
                )
                decision.refuse(
                    n, DeliveriesFailed(f"{len(failed)} deliveries failed: {what}"[:1500])
                )
            else:
                decision.done(n, None)
        return decision

    async def plan(self, incoming: Sequence[Incoming]) -> list[list[Ready] | Exception]:
        """Plan a batch of events in one unit of work; per event the deliveries to send
        now, or why it was refused. The first decision reads no deliveries: a planned event
        shows itself by a duplicate key, and the batch is decided again knowing them."""
        decided = 0

        async def handle(batch: Sequence[Incoming]) -> Decision[list[Ready]]:
            nonlocal decided
            decided += 1
            return await self._plan(batch, known=decided > 1)

        return await self.uow.run(incoming, handle)

    async def _plan(self, batch: Sequence[Incoming], *, known: bool) -> Decision[list[Ready]]:
        state = _State(*await self._load(batch))
        existing: dict[str, list[Delivery]] = {}
        if known:
            for d in await self.store.deliveries_of_events([i.env.id for i in batch]):
                existing.setdefault(d.event_id, []).append(d)
        # everyone the batch may tell, as its events go: their preferences in one read
        ahead = _State(dict(state.contacts), dict(state.cases))
        audience: list[str] = []
        for inc in batch:
            contact, case = ahead.after(inc.event)
            audience += self.planner.recipient_ids(_facts(inc, contact, case))
            ahead.keep(contact, case)
        prefs = {rid: p.preference for rid, p in (await self.store.preferences(audience)).items()}
        read = set(audience)

        decision: Decision[list[Ready]] = Decision()
        fx = decision.effects
        now = self.clock()
        done = _Planned()
        for n, inc in enumerate(batch):
            contact, case = state.after(inc.event)
            facts = _facts(inc, contact, case)
            if inc.env.id in existing:  # planned before: its open deliveries, not a new plan
                ready = self._reopen(existing[inc.env.id], fx, now)
            else:
                unread = [r for r in self.planner.recipient_ids(facts) if r not in read]
                if unread:  # an earlier event of the batch was refused: another audience
                    more = await self.store.preferences(unread)
                    prefs |= {rid: p.preference for rid, p in more.items()}
                    read.update(unread)
                try:
                    plans = self.planner.plan(
                        facts,
                        prefs,
                        now,
                        emergency=contact is not None
                        and contact.urgency == Urgency.EMERGENCY.value,
                    )
                except TemplateError as exc:
                    decision.refuse(n, PlanRefused(str(exc)))
                    continue
                ready = self._record_plan(inc, plans, fx, now, done)
            # what this event tells is kept, for later events of the batch and after
            told = contact_from(inc.event)
            if told is not None:
                self.store.save_contact(fx, told, now)
            if case is not None and case != state.cases.get(case.case_id):
                self.store.save_case(fx, case, now)
            if closes(inc.event):  # the contact and case go a window from now
                self.store.mark_closed(fx, inc.event.request_id, now)
            state.keep(told, case)
            decision.done(n, ready)
        fx.on_commit(lambda: self._planned(done))
        return decision

    async def _load(
        self, batch: Sequence[Incoming]
    ) -> tuple[dict[str, Contact], dict[str, KnownCase]]:
        """The contacts and cases the batch needs and does not tell itself (one query each)."""
        told_contacts: set[str] = set()
        told_cases: set[str] = set()
        contacts: set[str] = set()
        cases: set[str] = set()
        for inc in batch:
            ev = inc.event
            if contact_from(ev) is not None:
                told_contacts.add(ev.request_id)
            elif ev.request_id not in told_contacts:
                contacts.add(ev.request_id)
            cid = case_id_of(ev)
            if cid is None:
                continue
            if case_after(ev, None) is not None:  # the event says the whole case (routed)
                told_cases.add(cid)
            elif cid not in told_cases:
                cases.add(cid)
        now = self.clock()
        return await self.store.contacts(contacts, now), await self.store.cases(cases, now)

    def _record_plan(
        self,
        inc: Incoming,
        plans: Sequence[Planned],
        fx: Effects,
        now: datetime,
        done: _Planned,
    ) -> list[Ready]:
        """The planned deliveries as writes: console ones sent with the plan, deferred ones
        with their release deadline; the rest ready to send."""
        ready: list[Ready] = []
        for p in plans:
            d = planned(
                event_id=inc.env.id,
                event_type=inc.event_type,
                request_id=inc.env.key or inc.event.request_id,
                case_id=case_id_of(inc.event),
                plan=p,
                markdown=p.channel in MARKDOWN_CHANNELS
                and self.planner.templates.has_markdown(p.template),
                now=now,
                lease_until=now + self.lease,
            )
            console = d.channel is NotifyChannel.CONSOLE and self.dispatch.has(d.channel)
            if d.status is Status.PENDING and console:
                d = d.sent_on_console(self.dispatch.owner, now)
                fx.emit(NOTIFICATIONS.name, self.dispatch.sent_event(d, now))
                done.console.append(d)
            self.store.insert_delivery(fx, d)
            done.deliveries.append(d)
            if d.status is Status.DEFERRED and d.not_before is not None:
                add(fx, f"release:{d.id}", RELEASE, d.not_before, d.id)
            elif d.status is Status.PENDING:
                ready.append(Ready(d, Take.PENDING))
        return ready

    def _reopen(self, existing: Sequence[Delivery], fx: Effects, now: datetime) -> list[Ready]:
        """An event planned before: its open deliveries go out now — a failed one again
        (a replay from the DLQ), never one that was sent or may have been (``sending``)."""
        ready: list[Ready] = []
        for d in existing:
            if d.status is Status.PENDING:
                ready.append(Ready(d, Take.PENDING))
            elif d.status is Status.RETRYING:
                own = d.owner == self.dispatch.owner
                ready.append(Ready(d, Take.OWN_RETRY if own else Take.ABANDONED))
            elif d.status is Status.FAILED:
                again = d.reopened(now + self.lease, now)
                self.store.reopen(fx, again)
                ready.append(Ready(again, Take.PENDING))
        return ready

    def _planned(self, done: _Planned) -> None:
        """After the plan committed: count it, write the console messages to the log."""
        for d in done.deliveries:
            status = "deferred" if d.status is Status.DEFERRED else "planned"
            self.metrics.notifications.labels(d.channel.value, status).inc()
        self.dispatch.console_written(done.console)

    # — quiet hours over —

    async def on_release(self, docs: Sequence[Doc]) -> Decision[None]:
        """Due release deadlines: their deferred deliveries become ``pending`` with the
        deadlines' firing, and go out once that committed. A delivery no longer deferred
        (released before) is left alone; if the process dies before sending, the sweep
        resumes it after its lease."""
        found = await self.store.deliveries_by_id(str(d["subject"]) for d in docs)
        decision: Decision[None] = Decision()
        now = self.clock()
        ready: list[Ready] = []
        for n, doc in enumerate(docs):
            d = found.get(str(doc["subject"]))
            if doc.get("kind") != RELEASE:
                log.warning("unknown deadline kind", extra={"deadline": doc.get("_id")})
            elif d is not None and d.status is Status.DEFERRED:
                released = d.released(now + self.lease, now)
                self.store.release(decision.effects, released)
                ready.append(Ready(released, Take.PENDING))
            decision.done(n, None)
        if ready:
            decision.effects.on_commit(lambda: self.dispatch.spawn(ready, "released"))
        return decision

    # — deliveries nobody holds —

    async def resume(self, limit: int = 100) -> int:
        """Resume open deliveries whose holder is gone (the process died or stalled, or a
        planned one was never claimed); how many this replica started on. Each is taken
        by a conditional claim, so one two replicas both see is still sent once."""
        found = await self.store.resumable(self.clock(), limit)
        fresh = [d for d in found if not self.dispatch.busy_with(d.id)]
        self.dispatch.spawn([Ready(d, Take.ABANDONED) for d in fresh], "resumed")
        return len(fresh)

    async def run_sweeper(self) -> None:
        """Resume every ``sweep_interval`` s until :meth:`stop_sweeper`."""
        while not self._stop.is_set():
            try:
                await self.resume()
            except Exception as exc:  # the database is away: next time
                log.warning("delivery sweep failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(self._stop.wait(), self.sweep_interval)
            except TimeoutError:
                pass

    def stop_sweeper(self) -> None:
        """Ask :meth:`run_sweeper` to return."""
        self._stop.set()

    # — recipients and their preferences (HTTP) —

    async def recipient(self, rid: str) -> tuple[Recipient, str]:
        """A directory recipient, or a submitter whose contact notify kept, and the source
        of its defaults; :class:`UnknownRecipient` otherwise."""
        r = self.planner.directory.get(rid)
        if r is not None:
            return r, "directory"
        if rid.startswith("submitter:"):
            request_id = rid.removeprefix("submitter:")
            contact = (await self.store.contacts([request_id], self.clock())).get(request_id)
            if contact is not None:
                facts = Facts("preference", {}, None, contact.facts())
                return self.planner.recipient(rid, facts), "defaults"
        raise UnknownRecipient(rid)

    async def preference(self, rid: str) -> PreferenceInEffect:
        """The channels and quiet hours in effect for a recipient."""
        r, source = await self.recipient(rid)
        stored = await self.store.preference(rid)
        if stored is not None:
            p = stored.preference
            return PreferenceInEffect(
                rid, p.channels, p.quiet_hours, "preference", stored.updated_at
            )
        return PreferenceInEffect(rid, r.channels, r.quiet_hours, source)

    async def set_preference(
        self, change: PreferenceChange, deadline: float | None
    ) -> SavedPreference:
        """Replace a recipient's channels and quiet hours (committed with concurrent
        changes); :class:`UnknownRecipient`, or :class:`NoAddress` for channels it cannot
        be reached on."""
        r, _source = await self.recipient(change.recipient)
        unreachable = [
            c
            for c in change.preference.channels
            if not r.can_use(c, default_webhook=self.planner.default_webhook)
        ]
        if unreachable:
            raise NoAddress(unreachable)
        return await self.preference_writes.submit(change, deadline=deadline)

    async def _save_preferences(
        self, changes: Sequence[PreferenceChange]
    ) -> Decision[SavedPreference]:
        decision: Decision[SavedPreference] = Decision()
        now = self.clock()
        for n, change in enumerate(changes):
            saved = SavedPreference(change.recipient, change.preference, change.by, now)
            self.store.put_preference(decision.effects, saved)
            decision.done(n, saved)
        return decision

    # — what was sent (HTTP) —

    async def deliveries(self, query: DeliveryQuery, limit: int) -> list[Delivery]:
        """Deliveries matching ``query``, oldest first."""
        return await self.store.list(query, limit)
