"""Intake's HTTP API: submit and read requests, the catalogue and the compounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pymongo.asynchronous.client_session import AsyncClientSession

from services.intake.config import IntakeSettings
from services.intake.domain.registry import Registry
from services.intake.domain.requests import (
    RequestCreate,
    RequestCreated,
    body_fingerprint,
    code_matches,
    format_request_id,
    hash_code,
    mask_name,
    mask_phone,
    new_tracking_code,
)
from services.intake.store import RequestStore
from tongxin.contracts.enums import CATEGORY_NAMES_ZH, Category
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import RequestSubmitted, Submitter
from tongxin.contracts.topics import REQUESTS
from tongxin.runtime.auth import Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc, in_transaction
from tongxin.runtime.service import OptionalPrincipal, ServiceRuntime

router = APIRouter(prefix="/v1", tags=["requests"])

STAFF_ROLES = {Role.STAFF, Role.ADMIN, Role.PLATFORM}


@dataclass
class IntakeContext:
    """What intake's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: IntakeSettings
    store: RequestStore
    registry: Registry


def get_ctx(request: Request) -> IntakeContext:
    """FastAPI dependency: intake's context."""
    ctx: IntakeContext = request.app.state.rt.extra["ctx"]
    return ctx


def get_store(request: Request) -> RequestStore:
    """FastAPI dependency: intake's store."""
    return get_ctx(request).store


def get_registry(request: Request) -> Registry:
    """FastAPI dependency: the community/compound registry."""
    return get_ctx(request).registry


CtxDep = Annotated[IntakeContext, Depends(get_ctx)]
StoreDep = Annotated[RequestStore, Depends(get_store)]
RegistryDep = Annotated[Registry, Depends(get_registry)]


class _IdempotentHit(Exception):
    def __init__(self, doc: Doc) -> None:
        self.doc = doc


def _replay(doc: Doc, fingerprint: str) -> dict[str, Any]:
    if doc["fingerprint"] != fingerprint:
        raise ApiError(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different body.",
        )
    response: dict[str, Any] = doc["response"]
    return response


@router.post("/requests", status_code=201, response_model=RequestCreated)
async def submit_request(
    body: RequestCreate,
    ctx: CtxDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> dict[str, Any]:
    """Accept a need: stored with its ``request.submitted`` event in one transaction."""
    rt, store, registry = ctx.rt, ctx.store, ctx.registry
    errors = registry.check_place(body.community, body.compound, body.location)
    if errors:
        raise ApiError(422, "validation_error", "The request is not valid.", errors)
    fingerprint = body_fingerprint(body)
    if idempotency_key:
        previous = await store.find_idempotent(idempotency_key)
        if previous is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return _replay(previous, fingerprint)

    now = datetime.now(UTC)
    prefix = ctx.settings.request_id_prefix
    number = await store.next_number(f"{prefix}-{now:%Y%m%d}")
    request_id = format_request_id(prefix, now.date(), number)
    code = new_tracking_code()
    answer = {"id": request_id, "tracking_code": code, "status": "submitted"}
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
        attributes=body.attributes,
        submitted_at=now,
    )
    env = Envelope.wrap(event, rt.source)
    doc: Doc = {
        "_id": request_id,
        **body.model_dump(mode="json"),
        "tracking_hash": hash_code(code),
        "status": "submitted",
        "submitted_at": now,
        "event_id": env.id,
        "timeline": [{"at": now, "status": "submitted", "note": "诉求已受理"}],
    }

    async def txn(session: AsyncClientSession) -> None:
        if idempotency_key:
            hit = await store.find_idempotent(idempotency_key, session)
            if hit is not None:
                raise _IdempotentHit(hit)
            await store.save_idempotent(
                session,
                idempotency_key,
                fingerprint,
                answer,
                ctx.settings.idempotency_ttl_s,
            )
        await store.insert(session, doc)
        await rt.outbox.add(session, REQUESTS.name, env)

    try:
        await in_transaction(rt.mongo, txn)
    except _IdempotentHit as hit:
        response.headers["Idempotent-Replayed"] = "true"
        return _replay(hit.doc, fingerprint)
    rt.relay.nudge()
    response.headers["Location"] = f"/v1/requests/{request_id}"
    return answer


def _view(doc: Doc, *, masked: bool) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "tracking_hash", "event_id")}
    out["id"] = doc["_id"]
    if masked:
        sub = dict(out.get("submitter") or {})
        sub["name"] = mask_name(sub.get("name", ""))
        sub["phone"] = mask_phone(sub.get("phone"))
        out["submitter"] = sub
        out.pop("address", None)
        out.pop("location", None)
    return out


def _is_staff(p: Principal | None) -> bool:
    return p is not None and p.role in STAFF_ROLES


@router.get("/requests/{request_id}")
async def read_request(
    request_id: str,
    store: StoreDep,
    principal: OptionalPrincipal,
    tracking_code: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Staff read it whole; a resident reads it masked with the tracking code."""
    not_found = ApiError(404, "not_found", "No such request, or the tracking code is wrong.")
    if not _is_staff(principal) and not tracking_code:
        raise ApiError(401, "unauthorized", "Give the tracking code, or a staff token.")
    doc = await store.get(request_id)
    if _is_staff(principal):
        if doc is None:
            raise not_found
        return _view(doc, masked=False)
    if doc is None or not code_matches(tracking_code or "", doc.get("tracking_hash", "")):
        raise not_found
    return _view(doc, masked=True)


@router.get("/categories")
async def categories() -> list[dict[str, str]]:
    """The service catalogue (SPEC §1)."""
    return [{"code": c.value, "name": CATEGORY_NAMES_ZH[c]} for c in Category]


@router.get("/compounds")
async def compounds(registry: RegistryDep) -> list[dict[str, Any]]:
    """Communities, their compounds and owners' committees."""
    return [
        {
            "id": c.id,
            "name": c.name,
            "stations": c.stations,
            "compounds": [
                {"id": x.id, "name": x.name, "owners_committee": x.owners_committee}
                for x in c.compounds
            ],
        }
        for c in registry.communities.values()
    ]
