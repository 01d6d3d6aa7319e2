"""Intake's HTTP API: submit, list and read requests, feedback, withdrawal, duplicate links,
the catalogue and the compounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from services.intake.config import IntakeSettings
from services.intake.domain.catalogue import catalogue
from services.intake.domain.paging import BadCursor, RequestFilter, decode_cursor, encode_cursor
from services.intake.domain.registry import Registry
from services.intake.domain.requests import (
    FeedbackCreate,
    RequestCreate,
    RequestCreated,
    WithdrawCreate,
)
from services.intake.domain.timeline import STATUS_NAMES_ZH, Status
from services.intake.domain.views import resident_view, staff_view, summary_view
from services.intake.limits import anonymous_limit
from services.intake.service import IntakeService, Invalid, is_staff, scope_filter
from services.intake.store import RequestStore
from tongxin.contracts.enums import Category, Channel, Tier, Urgency
from tongxin.runtime.auth import CurrentPrincipal, OptionalPrincipal, Principal
from tongxin.runtime.errors import ApiError
from tongxin.runtime.service import ServiceRuntime, WriteDeadline

router = APIRouter(prefix="/v1", tags=["requests"])


@dataclass
class IntakeContext:
    """What intake's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: IntakeSettings
    store: RequestStore
    registry: Registry
    service: IntakeService


def get_ctx(request: Request) -> IntakeContext:
    """FastAPI dependency: intake's context."""
    ctx: IntakeContext = request.app.state.rt.extra["ctx"]
    return ctx


def get_service(request: Request) -> IntakeService:
    """FastAPI dependency: intake's use cases."""
    return get_ctx(request).service


def get_registry(request: Request) -> Registry:
    """FastAPI dependency: the community/compound registry."""
    return get_ctx(request).registry


ServiceDep = Annotated[IntakeService, Depends(get_service)]
RegistryDep = Annotated[Registry, Depends(get_registry)]


def require_staff(principal: CurrentPrincipal) -> Principal:
    """FastAPI dependency: a staff, admin or platform token."""
    if not is_staff(principal):
        raise ApiError(403, "forbidden", "Only staff may do this.")
    return principal


StaffPrincipal = Annotated[Principal, Depends(require_staff)]


def invalid(exc: Invalid) -> ApiError:
    """422 with field-level details."""
    return ApiError(422, "validation_error", "The request is not valid.", exc.errors)


def _actor(principal: Principal | None) -> str:
    return f"{principal.role.value}:{principal.sub}" if principal else "resident"


@router.post(
    "/requests",
    status_code=201,
    response_model=RequestCreated,
    dependencies=[Depends(anonymous_limit)],
)
async def submit_request(
    body: RequestCreate,
    service: ServiceDep,
    principal: OptionalPrincipal,
    response: Response,
    deadline: WriteDeadline,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=128)] = None,
) -> dict[str, Any]:
    """Accept a need: stored with its ``request.submitted`` event in one transaction."""
    try:
        attrs = service.check(body)
    except Invalid as exc:
        service.metrics.rejected.labels("http").inc()
        raise invalid(exc) from exc
    result = await service.submit(
        body, attrs, idempotency_key=idempotency_key, principal=principal, deadline=deadline
    )
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/requests/{result.answer['id']}"
    return result.answer


@router.get("/requests")
async def list_requests(
    service: ServiceDep,
    _staff: StaffPrincipal,
    status: Status | None = None,
    tier: Tier | None = None,
    category: Category | None = None,
    community: Annotated[str | None, Query(max_length=64)] = None,
    compound: Annotated[str | None, Query(max_length=64)] = None,
    channel: Channel | None = None,
    urgency: Urgency | None = None,
    duplicate_of: Annotated[str | None, Query(max_length=64)] = None,
    submitted_from: datetime | None = None,
    submitted_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    """Staff: requests newest first, filtered, one page at a time (``next_cursor``).

    Community staff see their community's, a platform the ones it submitted."""
    for name, t in (("submitted_from", submitted_from), ("submitted_to", submitted_to)):
        if t is not None and t.tzinfo is None:
            raise ApiError(
                422,
                "validation_error",
                "The request is not valid.",
                [{"loc": ["query", name], "msg": "give a timezone offset", "type": "naive"}],
            )
    if submitted_from and submitted_to and submitted_from >= submitted_to:
        raise ApiError(
            422,
            "validation_error",
            "The request is not valid.",
            [
                {
                    "loc": ["query", "submitted_to"],
                    "msg": "must be after submitted_from",
                    "type": "range",
                }
            ],
        )
    try:
        after = decode_cursor(cursor) if cursor else None
    except BadCursor as exc:
        raise ApiError(
            400, "bad_cursor", "The cursor is not valid; start over without it."
        ) from exc
    flt = RequestFilter(
        status=status.value if status else None,
        tier=tier,
        category=category,
        community=community,
        compound=compound,
        channel=channel,
        urgency=urgency,
        submitted_from=submitted_from,
        submitted_to=submitted_to,
        duplicate_of=duplicate_of,
    )
    scope = scope_filter(_staff) or {}
    query = flt.query(after)
    docs = await service.page({"$and": [query, scope]} if scope else query, limit + 1)
    more = len(docs) > limit
    docs = docs[:limit]
    next_cursor = encode_cursor(docs[-1]["submitted_at"], docs[-1]["_id"]) if more else None
    return {"items": [summary_view(d) for d in docs], "next_cursor": next_cursor}


@router.get("/requests/{request_id}")
async def read_request(
    request_id: str,
    service: ServiceDep,
    principal: OptionalPrincipal,
    tracking_code: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Staff read it whole; a resident reads it masked with the tracking code."""
    req, staff = await service.authorize(request_id, principal, tracking_code)
    doc = req.to_doc()
    return staff_view(doc) if staff else resident_view(doc)


@router.post("/requests/{request_id}/feedback", status_code=201)
async def give_feedback(
    request_id: str,
    body: FeedbackCreate,
    service: ServiceDep,
    principal: OptionalPrincipal,
    deadline: WriteDeadline,
    tracking_code: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """回访: the resident (tracking code) or staff on their behalf rates a resolved request,
    once per resolution → ``request.feedback_given``."""
    req, _ = await service.authorize(request_id, principal, body.tracking_code or tracking_code)
    return await service.give_feedback(req, body.rating, body.comment, _actor(principal), deadline)


@router.post("/requests/{request_id}/withdraw")
async def withdraw_request(
    request_id: str,
    body: WithdrawCreate,
    service: ServiceDep,
    principal: OptionalPrincipal,
    deadline: WriteDeadline,
    tracking_code: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Withdraw before resolution → ``request.withdrawn``."""
    req, _ = await service.authorize(request_id, principal, body.tracking_code or tracking_code)
    return await service.withdraw(req, body.reason, _actor(principal), deadline)


@router.delete("/requests/{request_id}/duplicate-link")
async def unlink_duplicate(
    request_id: str, service: ServiceDep, staff: StaffPrincipal, deadline: WriteDeadline
) -> dict[str, Any]:
    """Staff: the request is not a duplicate after all; remove its ``duplicate_of``."""
    req, _ = await service.authorize(request_id, staff, None)
    return await service.unlink_duplicate(req, _actor(staff), deadline)


@router.get("/categories")
async def categories(service: ServiceDep) -> list[dict[str, Any]]:
    """The service catalogue (SPEC §1) with each category's typed extra attributes."""
    return catalogue(service.departments)


@router.get("/statuses")
async def statuses() -> list[dict[str, str]]:
    """The statuses a request moves through."""
    return [{"code": s.value, "name": STATUS_NAMES_ZH[s]} for s in Status]


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
