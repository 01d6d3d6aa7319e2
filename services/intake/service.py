"""Intake's use cases, in batches: submissions (HTTP, Open311 and other platforms),
feedback, withdrawal, duplicate links, and the resident's timeline from case and task events.

Submissions of concurrent callers are decided together (:meth:`IntakeService.decide_submissions`):
one read of the Idempotency-Keys, one of the duplicate candidates and a block of request
numbers serve the whole batch, and the requests with their events commit in one
transaction. Changes of stored requests — a resident's rating or withdrawal, staff removing
a duplicate link, a case or task event — load the batch's requests once, apply each input
in order on the loaded state, and write each request once, conditional on the revision it
was read at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from services.intake.config import IntakeSettings
from services.intake.domain.catalogue import validate_attributes
from services.intake.domain.duplicates import Candidate, find_original, request_text
from services.intake.domain.registry import Registry
from services.intake.domain.requests import (
    InboundRequest,
    RequestCreate,
    StoredRequest,
    body_fingerprint,
    code_matches,
    format_request_id,
    hash_code,
    local_day,
    new_tracking_code,
    public_status,
    to_millis,
)
from services.intake.domain.timeline import (
    OPEN,
    RATING_NAMES_ZH,
    State,
    Status,
    apply_event,
    submitted_entry,
)
from services.intake.metrics import IntakeMetrics
from services.intake.store import RequestStore
from tongxin.contracts.enums import Category
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import (
    RequestFeedbackGiven,
    RequestSubmitted,
    RequestWithdrawn,
    Submitter,
    parse_event,
)
from tongxin.contracts.topics import PUBLIC_STATUS, REQUESTS
from tongxin.runtime.auth import STAFF_ROLES, Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import ServiceRuntime
from tongxin.runtime.uow import Decision, Effects, Refused

log = logging.getLogger(__name__)

# who reads requests whole (each within its scope): staff, and platforms their own
READERS = STAFF_ROLES | {Role.PLATFORM}
# compared against when a request does not exist, so a miss costs the same as a wrong code
_DUMMY_HASH = hash_code("no-such-request")


class Invalid(Exception):
    """A submission with field errors (SPEC error ``details``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class InboundRefused(Refused):
    """Another platform's submission that is not valid: parked with the reason."""


def pydantic_errors(exc: ValidationError, prefix: Sequence[str | int]) -> list[dict[str, Any]]:
    """Pydantic errors in the SPEC ``details`` shape, under ``prefix``."""
    return [
        {"loc": [*prefix, *e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def is_staff(p: Principal | None) -> bool:
    """Staff, admins and platforms read requests whole (each within its scope)."""
    return p is not None and p.role in READERS


def submitter_tag(p: Principal | None) -> str | None:
    """Who submitted over HTTP with a token (``platform:<sub>``); None for residents."""
    return f"{p.role.value}:{p.sub}" if p is not None else None


def scope_filter(p: Principal) -> Doc | None:
    """The requests a staff-like caller may see (object-level), as a database filter.

    Admins and town/county staff (no ``community:`` unit) see all (``{}``); community
    staff see their community's; a platform sees the requests it submitted itself.
    None: this caller may see no request as staff.
    """
    if p.role == Role.ADMIN:
        return {}
    if p.role == Role.STAFF:
        if p.unit and p.unit.startswith("community:"):
            return {"community": p.unit}
        return {}
    if p.role == Role.PLATFORM:
        return {"submitted_by": submitter_tag(p)}
    return None


def in_scope(p: Principal, req: StoredRequest) -> bool:
    """Does ``req`` match :func:`scope_filter` of ``p``?"""
    flt = scope_filter(p)
    doc = req.to_doc()
    return flt is not None and all(doc.get(k) == v for k, v in flt.items())


# — inputs of the batches —


@dataclass(frozen=True, slots=True)
class Submission:
    """The answer to a submission and whether it was a replay."""

    answer: dict[str, Any]
    replayed: bool = False


@dataclass
class Submit:
    """A checked submission (HTTP, Open311, or another platform's event)."""

    body: RequestCreate
    attrs: dict[str, Any]
    idempotency_key: str | None = None  # scoped to the caller: ``<sub>:<key>``
    submitted_by: str | None = None
    external: tuple[str, str] | None = None  # another platform's (source, event id)


# an operation on one stored request: changes it (or raises ApiError) and returns what the
# caller is answered, adding its events to the batch's effects
Operation = Callable[[StoredRequest, datetime, Effects], dict[str, Any]]


@dataclass
class Change:
    """One operation on one stored request."""

    request_id: str
    op: Operation


@dataclass
class _Requests:
    """The stored requests of one batch as the inputs so far left them."""

    loaded: dict[str, StoredRequest]
    current: dict[str, StoredRequest] = field(default_factory=dict)
    touched: list[str] = field(default_factory=list)

    def change(self, req: StoredRequest) -> None:
        self.current[req.id] = req
        if req.id not in self.touched:
            self.touched.append(req.id)


class IntakeService:
    """Submission, reading, feedback, withdrawal, duplicate links, the timeline."""

    def __init__(
        self,
        rt: ServiceRuntime,
        settings: IntakeSettings,
        store: RequestStore,
        registry: Registry,
        metrics: IntakeMetrics,
        unit_names: dict[str, str],
        departments: dict[Category, str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self.departments = departments  # category → the name of its alliance department
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.unit_names = unit_names
        self.clock = clock
        self.feedback_window = timedelta(seconds=settings.feedback_window_scaled_s)
        self.submissions = rt.batcher("submissions", self.decide_submissions, max_batch=128)
        self.changes = rt.batcher("request-changes", self.decide_changes)

    # — submission ---------------------------------------------------------------------------

    def check(self, body: RequestCreate, prefix: Sequence[str] = ("body",)) -> dict[str, Any]:
        """Registry and per-category checks; the normalised attributes, or :class:`Invalid`."""
        errors = [
            {**e, "loc": [*prefix, *e["loc"][1:]]}
            for e in self.registry.check_place(body.community, body.compound, body.location)
        ]
        attrs, attr_errors = validate_attributes(
            body.category, body.attributes, (*prefix, "attributes")
        )
        errors += attr_errors
        if errors:
            raise Invalid(errors)
        return attrs

    async def submit(
        self,
        body: RequestCreate,
        attrs: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        principal: Principal | None = None,
        deadline: float | None = None,
    ) -> Submission:
        """Store a checked request and its events, committed with concurrent submissions.

        ``Idempotency-Key``: the same key and body get the same answer (also when both
        arrive at once); the same key with another body gets 409. Keys are scoped to the
        token's subject, so one client cannot replay another's answers.
        """
        key = None
        if idempotency_key:
            key = f"{principal.sub if principal else '-'}:{idempotency_key}"
        item = Submit(body, attrs, key, submitted_by=submitter_tag(principal))
        result: Submission = await self.submissions.submit(item, deadline=deadline)
        return result

    async def decide_submissions(self, items: Sequence[Submit]) -> Decision[Submission]:
        """A batch of checked submissions: replays, duplicates, numbers, then one commit."""
        now = to_millis(self.clock())
        decision: Decision[Submission] = Decision()
        fx = decision.effects
        keys = [i.idempotency_key for i in items if i.idempotency_key]
        stored = await self.store.idempotent_answers(keys, now)
        fresh: list[int] = []
        first_of: dict[str, int] = {}  # key -> the input of this batch that uses it first
        twins: list[tuple[int, int]] = []  # (input, the earlier input with its key)
        prints = {n: body_fingerprint(i.body) for n, i in enumerate(items) if i.idempotency_key}
        for n, item in enumerate(items):
            key = item.idempotency_key
            if key is None:
                fresh.append(n)
                continue
            previous = stored.get(key)
            if previous is not None and not previous["expired"]:
                self._settle_replay(
                    decision, n, previous["fingerprint"], previous["response"], prints[n]
                )
            elif key in first_of:  # the same key twice in this batch: answered as the first
                twins.append((n, first_of[key]))
            else:
                first_of[key] = n
                fresh.append(n)
        if not fresh:
            return decision
        window = timedelta(hours=self.settings.duplicate_window_h)
        places = [
            (items[n].body.compound, items[n].body.category.value)
            for n in fresh
            if items[n].body.compound
        ]
        candidates = await self.store.similar_open(
            [(p, c) for p, c in places if p],
            now - window,
            [s.value for s in OPEN],
            self.settings.duplicate_candidates,
        )
        prefix = self.settings.request_id_prefix
        day = local_day(now)
        numbers = await self.store.next_numbers(f"{prefix}-{day:%Y%m%d}", len(fresh))
        accepted: list[StoredRequest] = []
        answers: dict[int, dict[str, Any]] = {}
        for n, number in zip(fresh, numbers, strict=True):
            item = items[n]
            request_id = format_request_id(prefix, day, number)
            req, answer = self._new_request(item, request_id, now, candidates, window, fx)
            if item.idempotency_key:
                previous = stored.get(item.idempotency_key)
                self.store.save_idempotent(
                    fx,
                    item.idempotency_key,
                    prints[n],
                    answer,
                    now,
                    self.settings.idempotency_ttl_s,
                    replacing=previous["expires_at"] if previous else None,
                )
            accepted.append(req)
            answers[n] = answer
            decision.done(n, Submission(answer))
        for n, first in twins:
            self._settle_replay(decision, n, prints[first], answers[first], prints[n])
        fx.on_commit(lambda: self._accepted(accepted))
        return decision

    def _new_request(
        self,
        item: Submit,
        request_id: str,
        now: datetime,
        candidates: dict[tuple[str, str], list[Doc]],
        window: timedelta,
        fx: Effects,
    ) -> tuple[StoredRequest, dict[str, Any]]:
        """The new request, its events in ``fx``, and the answer."""
        body = item.body
        duplicate_of: str | None = None
        score: float | None = None
        place = (body.compound or "", body.category.value)
        if body.compound:
            found = find_original(
                request_text(body.title, body.description),
                now,
                [
                    Candidate(
                        id=d["_id"],
                        text=request_text(d.get("title", ""), d.get("description", "")),
                        submitted_at=d["submitted_at"],
                        duplicate_of=d.get("duplicate_of"),
                    )
                    for d in candidates.get(place, [])
                ],
                threshold=self.settings.duplicate_threshold,
                window=window,
            )
            if found is not None:
                duplicate_of, score = found
        code = new_tracking_code()
        data = body.model_dump(mode="json")
        data["attributes"] = item.attrs
        req = StoredRequest.model_validate(
            {
                **data,
                "_id": request_id,
                "tracking_hash": hash_code(code),
                "status": Status.SUBMITTED.value,
                "submitted_at": now,
                "status_changed_at": now,
                "rev": 0,
                "duplicate_of": duplicate_of,
                "duplicate_score": score,
                "submitted_by": item.submitted_by,
                "external": {"source": item.external[0], "id": item.external[1]}
                if item.external
                else None,
                "timeline": [submitted_entry(now, duplicate_of=duplicate_of)],
            }
        )
        event = RequestSubmitted(
            request_id=request_id,
            channel=body.channel,
            category=body.category,
            title=body.title,
            description=body.description,
            community=body.community,
            compound=body.compound,
            address=body.address,
            location=body.location,
            urgency=body.urgency,
            vulnerable=body.vulnerable,
            submitter=Submitter(**body.submitter.model_dump()),
            attributes=item.attrs,
            submitted_at=now,
            attachments=[str(u) for u in body.attachments],
            duplicate_of=duplicate_of,
            external_source=item.external[0] if item.external else None,
            external_id=item.external[1] if item.external else None,
        )
        submitted = Envelope.wrap(event, self.rt.source)
        req.event_id = submitted.id
        status = public_status(req, Status.SUBMITTED.value, "诉求已受理", now, None)
        self.store.insert(fx, req)
        fx.emit(REQUESTS.name, submitted)
        fx.emit(PUBLIC_STATUS.name, Envelope.wrap(status, self.rt.source))
        if body.compound:  # a later submission of this batch may duplicate this one
            candidates.setdefault(place, []).insert(
                0,
                {
                    "_id": request_id,
                    "title": body.title,
                    "description": body.description,
                    "submitted_at": now,
                    "duplicate_of": duplicate_of,
                },
            )
        answer: dict[str, Any] = {
            "id": request_id,
            "tracking_code": code,
            "status": Status.SUBMITTED.value,
            "duplicate_of": duplicate_of,
        }
        return req, answer

    def _settle_replay(
        self,
        decision: Decision[Submission],
        n: int,
        stored_fp: str,
        answer: dict[str, Any],
        fp: str,
    ) -> None:
        """Input ``n`` reuses an Idempotency-Key: the same answer for the same body, 409
        for another body."""
        if stored_fp != fp:
            decision.refuse(
                n,
                ApiError(
                    409,
                    "idempotency_key_reused",
                    "This Idempotency-Key was already used with a different body.",
                ),
            )
            return
        decision.done(n, Submission(dict(answer), replayed=True))
        decision.effects.on_commit(self.metrics.idempotent_replays.inc)

    def _accepted(self, reqs: Sequence[StoredRequest]) -> None:
        for req in reqs:
            self.metrics.submitted.labels(req.channel, req.category).inc()
            if req.duplicate_of:
                self.metrics.duplicates_linked.inc()

    # — other platforms' submissions (inbound topic) ---------------------------------------

    async def on_inbound(self, envs: Sequence[Envelope]) -> Decision[None]:
        """Inbound ``request.submitted``: validated like HTTP, once per (source, id);
        invalid ones are refused (parked on the DLQ with the reason)."""
        out: Decision[None] = Decision()
        pairs = [(e.source, e.id) for e in envs]
        known = await self.store.external_ids(pairs)
        items: list[Submit] = []
        at: list[int] = []
        seen: set[tuple[str, str]] = set()
        for n, env in enumerate(envs):
            pair = (env.source, env.id)
            if pair in known or pair in seen:
                self.metrics.inbound_duplicates.inc()
                out.done(n, None)
                continue
            try:
                body = InboundRequest.model_validate(env.data)
                attrs = self.check(body, prefix=("data",))
            except ValidationError as exc:
                self.metrics.rejected.labels("inbound").inc()
                out.refuse(n, InboundRefused(str(Invalid(pydantic_errors(exc, ("data",))))))
                continue
            except Invalid as exc:
                self.metrics.rejected.labels("inbound").inc()
                out.refuse(n, InboundRefused(str(exc)))
                continue
            seen.add(pair)
            items.append(Submit(body, attrs, external=pair))
            at.append(n)
        if items:
            decided = await self.decide_submissions(items)
            out.effects = decided.effects
            for j, n in enumerate(at):
                outcome = decided.outcomes[j]
                if isinstance(outcome, Exception):
                    out.refuse(n, outcome)
                    continue
                out.done(n, None)
                log.info(
                    "inbound request",
                    extra={
                        "source": envs[n].source,
                        "ce_id": envs[n].id,
                        "request_id": outcome.answer["id"],
                    },
                )
        return out

    # — reading ------------------------------------------------------------------------------

    async def authorize(
        self, request_id: str, principal: Principal | None, tracking_code: str | None
    ) -> tuple[StoredRequest, bool]:
        """The request and whether the caller is staff; 401/403/404 otherwise.

        Unknown ids, wrong tracking codes and requests outside a staff caller's scope give
        the same 404, so neither codes nor ids can be probed.
        """
        not_found = ApiError(404, "not_found", "No such request, or the tracking code is wrong.")
        staff = is_staff(principal)
        if not staff and not tracking_code:
            if principal is not None:
                raise ApiError(403, "forbidden", "This token may not read requests.")
            raise ApiError(401, "unauthorized", "Give the tracking code, or a staff token.")
        req = await self.store.get(request_id)
        if staff:
            assert principal is not None
            if req is None or not in_scope(principal, req):
                raise not_found
            return req, True
        stored = req.tracking_hash if req else _DUMMY_HASH
        if not code_matches(tracking_code or "", stored) or req is None:
            raise not_found
        return req, False

    async def read_public(self, request_id: str) -> StoredRequest:
        """A request for its public view, which anyone may read (Open311); 404 if none."""
        req = await self.store.get(request_id)
        if req is None:
            raise ApiError(404, "not_found", "No such request.")
        return req

    async def page(self, flt: Doc, limit: int) -> list[Doc]:
        """Requests matching ``flt`` (already scoped to the caller), newest first, for lists."""
        return await self.store.page(flt, limit)

    # — changes of stored requests -----------------------------------------------------------

    async def decide_changes(self, items: Sequence[Change]) -> Decision[dict[str, Any]]:
        """Load the batch's requests once, apply each operation in order, write each once."""
        batch = _Requests(await self.store.load_many([i.request_id for i in items]))
        batch.current = {k: v.model_copy(deep=True) for k, v in batch.loaded.items()}
        decision: Decision[dict[str, Any]] = Decision()
        now = to_millis(self.clock())
        for n, item in enumerate(items):
            current = batch.current.get(item.request_id)
            if current is None:
                decision.refuse(n, ApiError(404, "not_found", "No such request."))
                continue
            req = current.model_copy(deep=True)
            staged = Effects()
            try:
                answer = item.op(req, now, staged)
            except (ApiError, Refused) as exc:
                decision.refuse(n, exc)
                continue
            decision.effects.extend(staged)
            batch.change(req)
            decision.done(n, answer)
        for rid in batch.touched:
            self.store.save(decision.effects, batch.current[rid], batch.loaded[rid].rev)
        return decision

    async def _change(
        self, request_id: str, op: Operation, deadline: float | None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.changes.submit(
            Change(request_id, op), deadline=deadline
        )
        return result

    async def give_feedback(
        self, req: StoredRequest, rating: Any, comment: str | None, by: str, deadline: float | None
    ) -> dict[str, Any]:
        """Rate a resolved request, once per resolution → ``request.feedback_given``."""
        source = self.rt.source
        metrics = self.metrics

        def rate(r: StoredRequest, now: datetime, fx: Effects) -> dict[str, Any]:
            rnd = r.resolution_round
            if r.status != Status.RESOLVED.value or not r.awaiting_feedback:
                if any(f.get("round") == rnd for f in r.feedback):
                    raise ApiError(
                        409, "feedback_already_given", "This resolution was already rated."
                    )
                raise ApiError(
                    409,
                    "not_resolved",
                    "Feedback is possible only after the request was resolved.",
                    {"status": r.status},
                )
            due = r.feedback_due
            if due is not None and (due if due.tzinfo else due.replace(tzinfo=UTC)) < now:
                raise ApiError(409, "feedback_window_closed", "The time to rate this has passed.")
            record = {"round": rnd, "rating": rating.value, "comment": comment, "at": now, "by": by}
            env = Envelope.wrap(
                RequestFeedbackGiven(
                    request_id=r.id,
                    case_id=r.case_id,
                    rating=rating,
                    comment=comment,
                    given_at=now,
                    resolution_round=rnd,
                ),
                source,
            )
            r.timeline.append(
                _entry(
                    now,
                    "request.feedback_given",
                    f"您的评价：{RATING_NAMES_ZH[rating]}",
                    comment,
                    env.id,
                )
            )
            r.feedback.append(record)
            r.awaiting_feedback = False
            r.last_rating = rating.value
            fx.emit(REQUESTS.name, env)
            fx.on_commit(lambda: metrics.feedback.labels(rating.value).inc())
            return {"request_id": r.id, **record}

        return await self._change(req.id, rate, deadline)

    async def withdraw(
        self, req: StoredRequest, reason: str | None, by: str, deadline: float | None
    ) -> dict[str, Any]:
        """Withdraw before resolution → ``request.withdrawn`` and a public status."""
        source = self.rt.source
        metrics = self.metrics

        def withdraw(r: StoredRequest, now: datetime, fx: Effects) -> dict[str, Any]:
            if r.status not in {s.value for s in OPEN}:
                raise ApiError(
                    409,
                    "not_withdrawable",
                    "Only a request that is not resolved yet can be withdrawn.",
                    {"status": r.status},
                )
            previous = r.status
            withdrawn = Envelope.wrap(
                RequestWithdrawn(
                    request_id=r.id, reason=reason, withdrawn_at=now, case_id=r.case_id
                ),
                source,
            )
            note = "诉求人已撤回"
            entry = _entry(now, "request.withdrawn", note, reason, withdrawn.id)
            entry["status"] = Status.WITHDRAWN.value
            r.timeline.append(entry)
            r.status = Status.WITHDRAWN.value
            r.status_changed_at = now
            r.withdrawn_at = now
            r.withdrawn_by = by
            r.awaiting_feedback = False
            fx.emit(REQUESTS.name, withdrawn)
            status = public_status(r, Status.WITHDRAWN.value, note, now, previous)
            fx.emit(PUBLIC_STATUS.name, Envelope.wrap(status, source))
            fx.on_commit(metrics.withdrawn.inc)
            return {"id": r.id, "status": Status.WITHDRAWN.value, "withdrawn_at": now}

        return await self._change(req.id, withdraw, deadline)

    async def unlink_duplicate(
        self, req: StoredRequest, by: str, deadline: float | None
    ) -> dict[str, Any]:
        """Staff: this request is not a duplicate after all."""

        def unlink(r: StoredRequest, now: datetime, fx: Effects) -> dict[str, Any]:
            was = r.duplicate_of
            if not was:
                raise ApiError(409, "not_linked", "This request is not linked as a duplicate.")
            entry = _entry(now, "duplicate.unlinked", f"已解除与 {was} 的关联", f"by {by}", None)
            entry["public"] = False
            r.timeline.append(entry)
            r.duplicate_of = None
            r.duplicate_unlinked = {"was": was, "by": by, "at": now}
            return {"id": r.id, "duplicate_of": None, "unlinked_from": was}

        return await self._change(req.id, unlink, deadline)

    # — the timeline (case and task events) --------------------------------------------------

    async def on_timeline(self, envs: Sequence[Envelope]) -> Decision[None]:
        """``case.*`` and ``task.*`` events: a timeline entry each, maybe a status change
        (with its masked ``request.status``). Events of requests that are not ours (a
        care visit's key, another deployment's request) change nothing. An event is
        applied once: its entry carries its id, and an event whose entry is there already
        (delivered again after a crash, or published twice) changes nothing — so this
        consumer needs no processed-event marks."""
        out: Decision[None] = Decision()
        parsed = []
        for n, env in enumerate(envs):
            try:
                event = parse_event(env.type, env.data)
            except ValidationError as exc:
                # the producer's bug, not a passing fault: retrying cannot help
                out.refuse(n, Refused(f"invalid {env.type}: {exc.error_count()} error(s): {exc}"))
                continue
            parsed.append((n, env, event))
        batch = _Requests(
            await self.store.load_many([e.request_id for _, _, e in parsed if e is not None])
        )
        batch.current = {k: v.model_copy(deep=True) for k, v in batch.loaded.items()}
        fx = out.effects
        for n, env, event in parsed:
            out.done(n, None)
            if event is None or event.request_id not in batch.current:
                continue
            req = batch.current[event.request_id]
            if any(e.get("event_id") == env.id for e in req.timeline):
                continue  # delivered again: its entry (and any status it moved) is there
            at = getattr(event, "at", None) or env.time
            change = apply_event(
                State(status=Status(req.status), resolution_round=req.resolution_round),
                event,
                event_id=env.id,
                at=at,
                unit_names=self.unit_names,
                feedback_window=self.feedback_window,
            )
            if change is None:
                continue
            previous = req.status
            req = req.with_changes(**change.fields)
            req.timeline.append(change.entry)
            if change.status is not None:
                req.status = change.status.value
                req.status_changed_at = at
                status = public_status(req, change.status.value, change.public_note, at, previous)
                fx.emit(PUBLIC_STATUS.name, Envelope.wrap(status, self.rt.source))
            batch.change(req)
        for rid in batch.touched:
            self.store.save(fx, batch.current[rid], batch.loaded[rid].rev)
        return out

    # — housekeeping -------------------------------------------------------------------------

    def start_housekeeping(self, key_purge_s: float) -> None:
        """Expired Idempotency-Keys (they hold tracking codes) and contact details past
        retention are removed now and then, until the service stops."""
        stop = asyncio.Event()
        retention = timedelta(days=self.settings.intake_contact_retention_days)
        interval = self.settings.intake_retention_interval_s

        async def run() -> None:
            keys_due = 0.0
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                now = self.clock()
                try:
                    if loop.time() >= keys_due:
                        await self.store.purge_expired_keys(now)
                        keys_due = loop.time() + key_purge_s
                    while (n := await self.store.purge_contacts(now - retention, now)) > 0:
                        log.info("contact details removed", extra={"requests": n})
                except Exception as exc:
                    log.warning("housekeeping failed", extra={"error": repr(exc)})
                try:
                    await asyncio.wait_for(stop.wait(), min(interval, key_purge_s))
                except TimeoutError:
                    pass

        self.rt.run_in_background("housekeeping", run, stop.set)


def _entry(
    at: datetime, kind: str, note: str, detail: str | None, event_id: str | None
) -> dict[str, Any]:
    """A timeline entry of intake's own doing (the resident's or staff's)."""
    return {
        "at": at,
        "kind": kind,
        "status": None,
        "unit": None,
        "unit_name": None,
        "note": note,
        "detail": detail,
        "public": True,
        "event_id": event_id,
    }
