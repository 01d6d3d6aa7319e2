"""Intake's use cases, shared by the JSON API, the Open311 facade and the inbound topic.

Every state change is written together with its events (outbox) in one transaction; the
relay is nudged after the commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from services.intake.config import IntakeSettings
from services.intake.domain.catalogue import validate_attributes
from services.intake.domain.duplicates import Candidate, find_original, request_text
from services.intake.domain.registry import Registry
from services.intake.domain.requests import (
    RequestCreate,
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
    Status,
    submitted_entry,
)
from services.intake.metrics import IntakeMetrics
from services.intake.store import RequestStore
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import (
    RequestFeedbackGiven,
    RequestSubmitted,
    RequestWithdrawn,
    Submitter,
)
from tongxin.contracts.topics import PUBLIC_STATUS, REQUESTS
from tongxin.runtime.auth import Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc, handle_once, in_transaction
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

STAFF_ROLES = frozenset({Role.STAFF, Role.ADMIN, Role.PLATFORM})
INBOUND_CONSUMER = "intake.inbound"
# compared against when a request does not exist, so a miss costs the same as a wrong code
_DUMMY_HASH = hash_code("no-such-request")


class Invalid(Exception):
    """A submission with field errors (SPEC error ``details``)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def pydantic_errors(exc: ValidationError, prefix: Sequence[str | int]) -> list[dict[str, Any]]:
    """Pydantic errors in the SPEC ``details`` shape, under ``prefix``."""
    return [
        {"loc": [*prefix, *e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]


def is_staff(p: Principal | None) -> bool:
    """Staff, admins and platforms read requests whole (each within its scope)."""
    return p is not None and p.role in STAFF_ROLES


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


def in_scope(p: Principal, doc: Doc) -> bool:
    """Does ``doc`` match :func:`scope_filter` of ``p``?"""
    flt = scope_filter(p)
    return flt is not None and all(doc.get(k) == v for k, v in flt.items())


class _IdempotentHit(Exception):
    def __init__(self, doc: Doc) -> None:
        self.doc = doc


class _Refused(Exception):
    """A conditional update matched nothing: the request moved on meanwhile."""


@dataclass(frozen=True, slots=True)
class Submission:
    """The answer to a submission and whether it was a replay."""

    answer: dict[str, Any]
    replayed: bool = False


class IntakeService:
    """Submission, reading, feedback, withdrawal and duplicate links."""

    def __init__(
        self,
        rt: ServiceRuntime,
        settings: IntakeSettings,
        store: RequestStore,
        registry: Registry,
        metrics: IntakeMetrics,
        unit_names: dict[str, str],
    ) -> None:
        self.rt = rt
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.unit_names = unit_names

    # -- submission -----------------------------------------------------------------------

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

    async def _duplicate_of(self, body: RequestCreate, now: datetime) -> tuple[str, float] | None:
        if not body.compound:
            return None
        window = timedelta(hours=self.settings.duplicate_window_h)
        docs = await self.store.open_similar(
            body.compound,
            body.category.value,
            now - window,
            [s.value for s in OPEN],
            self.settings.duplicate_candidates,
        )
        candidates = [
            Candidate(
                id=d["_id"],
                text=request_text(d.get("title", ""), d.get("description", "")),
                submitted_at=d["submitted_at"],
                duplicate_of=d.get("duplicate_of"),
            )
            for d in docs
        ]
        return find_original(
            request_text(body.title, body.description),
            now,
            candidates,
            threshold=self.settings.duplicate_threshold,
            window=window,
        )

    async def _prepare(
        self, body: RequestCreate, attrs: dict[str, Any], external: tuple[str, str] | None
    ) -> tuple[Doc, list[tuple[str, Envelope]], dict[str, Any]]:
        """The request document, its events and the answer (ids allocated, nothing stored)."""
        now = to_millis(datetime.now(UTC))
        prefix = self.settings.request_id_prefix
        day = local_day(now)
        number = await self.store.next_number(f"{prefix}-{day:%Y%m%d}")
        request_id = format_request_id(prefix, day, number)
        code = new_tracking_code()
        dup = await self._duplicate_of(body, now)
        duplicate_of = dup[0] if dup else None
        data = body.model_dump(mode="json")
        data["attributes"] = attrs
        doc: Doc = {
            "_id": request_id,
            **data,
            "tracking_hash": hash_code(code),
            "status": Status.SUBMITTED.value,
            "submitted_at": now,
            "status_changed_at": now,
            "rev": 0,
            "resolution_round": 0,
            "awaiting_feedback": False,
            "duplicate_of": duplicate_of,
            "timeline": [submitted_entry(now, duplicate_of=duplicate_of)],
        }
        if dup:
            doc["duplicate_score"] = dup[1]
        if external:
            doc["external"] = {"source": external[0], "id": external[1]}
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
            attributes=attrs,
            submitted_at=now,
            attachments=[str(u) for u in body.attachments],
            duplicate_of=duplicate_of,
            external_source=external[0] if external else None,
            external_id=external[1] if external else None,
        )
        submitted = Envelope.wrap(event, self.rt.source)
        doc["event_id"] = submitted.id
        status = Envelope.wrap(
            public_status(doc, Status.SUBMITTED.value, "诉求已受理", now, None), self.rt.source
        )
        answer: dict[str, Any] = {
            "id": request_id,
            "tracking_code": code,
            "status": Status.SUBMITTED.value,
            "duplicate_of": duplicate_of,
        }
        return doc, [(REQUESTS.name, submitted), (PUBLIC_STATUS.name, status)], answer

    async def _stage(
        self, session: AsyncClientSession, doc: Doc, events: list[tuple[str, Envelope]]
    ) -> None:
        await self.store.insert(session, doc)
        for topic, env in events:
            await self.rt.outbox.add(session, topic, env)

    def _accepted(self, doc: Doc) -> None:
        self.rt.relay.nudge()
        self.metrics.submitted.labels(doc["channel"], doc["category"]).inc()
        if doc.get("duplicate_of"):
            self.metrics.duplicates_linked.inc()

    def _replay(self, stored: Doc, fingerprint: str) -> Submission:
        if stored["fingerprint"] != fingerprint:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different body.",
            )
        self.metrics.idempotent_replays.inc()
        return Submission(dict(stored["response"]), replayed=True)

    async def submit(
        self,
        body: RequestCreate,
        attrs: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        principal: Principal | None = None,
    ) -> Submission:
        """Store a checked request and its events in one transaction.

        ``Idempotency-Key``: the same key and body get the same answer (also when both
        arrive at once); the same key with another body gets 409. Keys are scoped to the
        token's subject, so one client cannot replay another's answers.
        """
        fingerprint = body_fingerprint(body)
        key = None
        if idempotency_key:
            key = f"{principal.sub if principal else '-'}:{idempotency_key}"
            previous = await self.store.find_idempotent(key)
            if previous is not None:
                return self._replay(previous, fingerprint)
        doc, events, answer = await self._prepare(body, attrs, None)
        if principal is not None:
            doc["submitted_by"] = submitter_tag(principal)

        async def txn(session: AsyncClientSession) -> None:
            if key:
                hit = await self.store.find_idempotent(key, session)
                if hit is not None:
                    raise _IdempotentHit(hit)
                await self.store.save_idempotent(
                    session, key, fingerprint, answer, self.settings.idempotency_ttl_s
                )
            await self._stage(session, doc, events)

        try:
            await in_transaction(self.rt.mongo, txn)
        except _IdempotentHit as hit:
            return self._replay(hit.doc, fingerprint)
        except DuplicateKeyError:
            # the same key committed by a concurrent request in between: answer as it did
            stored = await self.store.find_idempotent(key) if key else None
            if stored is None:
                raise
            return self._replay(stored, fingerprint)
        self._accepted(doc)
        return Submission(answer)

    async def submit_external(
        self, body: RequestCreate, attrs: dict[str, Any], source: str, event_id: str
    ) -> str | None:
        """A request from another platform, once per (ce_source, ce_id); its id or None."""
        if await self.store.find_external(source, event_id) is not None:
            self.metrics.inbound_duplicates.inc()
            return None
        doc, events, _answer = await self._prepare(body, attrs, (source, event_id))

        async def stage(session: AsyncClientSession) -> None:
            await self._stage(session, doc, events)

        dedupe_key = json.dumps([source, event_id], ensure_ascii=False)
        if not await handle_once(self.rt.mongo, self.rt.db, INBOUND_CONSUMER, dedupe_key, stage):
            self.metrics.inbound_duplicates.inc()
            return None
        self._accepted(doc)
        return str(doc["_id"])

    # -- reading ---------------------------------------------------------------------------

    async def authorize(
        self, request_id: str, principal: Principal | None, tracking_code: str | None
    ) -> tuple[Doc, bool]:
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
        doc = await self.store.get(request_id)
        if staff:
            assert principal is not None
            if doc is None or not in_scope(principal, doc):
                raise not_found
            return doc, True
        stored = doc.get("tracking_hash", _DUMMY_HASH) if doc else _DUMMY_HASH
        if not code_matches(tracking_code or "", stored) or doc is None:
            raise not_found
        return doc, False

    # -- feedback and withdrawal -----------------------------------------------------------

    async def _change(
        self,
        doc: Doc,
        flt: Doc,
        set_fields: Doc,
        push: Doc,
        events: list[tuple[str, Envelope]],
    ) -> None:
        async def txn(session: AsyncClientSession) -> None:
            if not await self.store.update(session, flt, set_fields, push):
                raise _Refused
            for topic, env in events:
                await self.rt.outbox.add(session, topic, env)

        await in_transaction(self.rt.mongo, txn)
        self.rt.relay.nudge()

    async def give_feedback(
        self,
        doc: Doc,
        rating: Any,
        comment: str | None,
        by: str,
    ) -> dict[str, Any]:
        """Rate a resolved request, once per resolution → ``request.feedback_given``."""
        now = to_millis(datetime.now(UTC))
        status = doc.get("status")
        rnd = int(doc.get("resolution_round") or 0)
        if status != Status.RESOLVED.value or not doc.get("awaiting_feedback"):
            rated = any(f.get("round") == rnd for f in doc.get("feedback") or [])
            if rated:
                raise ApiError(409, "feedback_already_given", "This resolution was already rated.")
            raise ApiError(
                409,
                "not_resolved",
                "Feedback is possible only after the request was resolved.",
                {"status": status},
            )
        due = doc.get("feedback_due")
        if due is not None and (due if due.tzinfo else due.replace(tzinfo=UTC)) < now:
            raise ApiError(409, "feedback_window_closed", "The time to rate this has passed.")
        record = {"round": rnd, "rating": rating.value, "comment": comment, "at": now, "by": by}
        event = RequestFeedbackGiven(
            request_id=doc["_id"],
            case_id=doc.get("case_id"),
            rating=rating,
            comment=comment,
            given_at=now,
            resolution_round=rnd,
        )
        entry = {
            "at": now,
            "kind": "request.feedback_given",
            "status": None,
            "unit": None,
            "unit_name": None,
            "note": f"您的评价：{RATING_NAMES_ZH[rating]}",
            "detail": comment,
            "public": True,
            "event_id": None,
        }
        env = Envelope.wrap(event, self.rt.source)
        entry["event_id"] = env.id
        try:
            await self._change(
                doc,
                {
                    "_id": doc["_id"],
                    "status": Status.RESOLVED.value,
                    "awaiting_feedback": True,
                    "resolution_round": rnd,
                },
                {"awaiting_feedback": False, "last_rating": rating.value},
                {"timeline": entry, "feedback": record},
                [(REQUESTS.name, env)],
            )
        except _Refused:
            raise ApiError(
                409, "feedback_already_given", "This resolution was already rated."
            ) from None
        self.metrics.feedback.labels(rating.value).inc()
        return {"request_id": doc["_id"], **record}

    async def withdraw(self, doc: Doc, reason: str | None, by: str) -> dict[str, Any]:
        """Withdraw before resolution → ``request.withdrawn`` and a public status."""
        status = doc.get("status")
        if status not in {s.value for s in OPEN}:
            raise ApiError(
                409,
                "not_withdrawable",
                "Only a request that is not resolved yet can be withdrawn.",
                {"status": status},
            )
        now = to_millis(datetime.now(UTC))
        withdrawn = Envelope.wrap(
            RequestWithdrawn(
                request_id=doc["_id"], reason=reason, withdrawn_at=now, case_id=doc.get("case_id")
            ),
            self.rt.source,
        )
        note = "诉求人已撤回"
        public = Envelope.wrap(
            public_status(doc, Status.WITHDRAWN.value, note, now, status), self.rt.source
        )
        entry = {
            "at": now,
            "kind": "request.withdrawn",
            "status": Status.WITHDRAWN.value,
            "unit": None,
            "unit_name": None,
            "note": note,
            "detail": reason,
            "public": True,
            "event_id": withdrawn.id,
        }
        try:
            await self._change(
                doc,
                {"_id": doc["_id"], "status": {"$in": [s.value for s in OPEN]}},
                {
                    "status": Status.WITHDRAWN.value,
                    "status_changed_at": now,
                    "withdrawn_at": now,
                    "withdrawn_by": by,
                    "awaiting_feedback": False,
                },
                {"timeline": entry},
                [(REQUESTS.name, withdrawn), (PUBLIC_STATUS.name, public)],
            )
        except _Refused:
            raise ApiError(
                409, "not_withdrawable", "The request moved on meanwhile; reload it."
            ) from None
        self.metrics.withdrawn.inc()
        return {"id": doc["_id"], "status": Status.WITHDRAWN.value, "withdrawn_at": now}

    async def unlink_duplicate(self, doc: Doc, by: str) -> dict[str, Any]:
        """Staff: this request is not a duplicate after all."""
        was = doc.get("duplicate_of")
        if not was:
            raise ApiError(409, "not_linked", "This request is not linked as a duplicate.")
        now = to_millis(datetime.now(UTC))
        entry = {
            "at": now,
            "kind": "duplicate.unlinked",
            "status": None,
            "unit": None,
            "unit_name": None,
            "note": f"已解除与 {was} 的关联",
            "detail": f"by {by}",
            "public": False,
            "event_id": None,
        }
        try:
            await self._change(
                doc,
                {"_id": doc["_id"], "duplicate_of": was},
                {"duplicate_of": None, "duplicate_unlinked": {"was": was, "by": by, "at": now}},
                {"timeline": entry},
                [],
            )
        except _Refused:
            raise ApiError(409, "not_linked", "The link was already removed.") from None
        return {"id": doc["_id"], "duplicate_of": None, "unlinked_from": was}
