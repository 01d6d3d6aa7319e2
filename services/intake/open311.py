"""The Open311 GeoReport v2 facade under ``/open311/v2/`` (JSON format only).

Errors use the platform's error shape (SPEC §4), not GeoReport's list of errors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import ValidationError

from services.intake.api import ServiceDep, StaffPrincipal, invalid
from services.intake.domain.open311 import (
    CLOSED,
    form_loc,
    form_to_body,
    request_view,
    service_definition,
    services,
)
from services.intake.domain.requests import RequestCreate
from services.intake.limits import anonymous_limit
from services.intake.service import Invalid, pydantic_errors, scope_filter
from tongxin.contracts.enums import Category
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import OptionalPrincipal, WriteDeadline

router = APIRouter(prefix="/open311/v2", tags=["open311"])

MAX_FORM_FIELDS = 60


@router.get("/services.json")
async def list_services(service: ServiceDep) -> list[dict[str, Any]]:
    """GeoReport ``GET services``: the catalogue."""
    return services(service.departments)


@router.get("/services/{service_code}.json")
async def service_definition_json(service_code: str) -> dict[str, Any]:
    """GeoReport ``GET service definition``: a category's attributes."""
    try:
        category = Category(service_code)
    except ValueError:
        raise ApiError(404, "not_found", f"No service {service_code!r}.") from None
    return service_definition(category)


@router.post("/requests.json", status_code=201, dependencies=[Depends(anonymous_limit)])
async def post_request(
    request: Request,
    service: ServiceDep,
    principal: OptionalPrincipal,
    deadline: WriteDeadline,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=128)] = None,
) -> list[dict[str, Any]]:
    """GeoReport ``POST service request`` (``application/x-www-form-urlencoded``)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        raise ApiError(
            415 if ctype else 400,
            "unsupported_media_type",
            "Post the request form-encoded, as GeoReport v2 defines.",
        )
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    body_dict, origin = form_to_body(fields, service.registry, service.settings.open311_nearest_km)
    try:
        body = RequestCreate.model_validate(body_dict)
        attrs = service.check(body)
    except ValidationError as exc:
        service.metrics.rejected.labels("open311").inc()
        errors = pydantic_errors(exc, ("body",))
        raise invalid(Invalid(_form_errors(errors, origin, body_dict))) from exc
    except Invalid as exc:
        service.metrics.rejected.labels("open311").inc()
        raise invalid(Invalid(_form_errors(exc.errors, origin, body_dict))) from exc
    result = await service.submit(
        body, attrs, idempotency_key=idempotency_key, principal=principal, deadline=deadline
    )
    answer = result.answer
    return [
        {
            "service_request_id": answer["id"],
            "token": None,
            "service_notice": "诉求已受理，请妥善保存查询码 tracking_code。",
            "account_id": None,
            "tracking_code": answer["tracking_code"],
        }
    ]


def _form_errors(
    errors: list[dict[str, Any]], origin: dict[str, str], body: dict[str, Any]
) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = form_loc(list(e["loc"]), origin)
        msg = e["msg"]
        if loc == ["form", "community"] and not body.get("community"):
            msg = "give address_id (a compound id), a lat/long inside a compound, or community"
        out.append({**e, "loc": loc, "msg": msg})
    return out


@router.get("/requests/{request_id}.json")
async def get_request(
    request_id: str,
    service: ServiceDep,
    principal: OptionalPrincipal,
    tracking_code: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    """GeoReport ``GET service request``: staff token, or the resident's tracking code."""
    req, staff = await service.authorize(request_id, principal, tracking_code)
    return [request_view(req.to_doc(), service.unit_names, full=staff)]


@router.get("/requests.json")
async def list_requests(
    service: ServiceDep,
    _staff: StaffPrincipal,
    service_request_id: Annotated[str | None, Query(max_length=2000)] = None,
    service_code: Category | None = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
) -> list[dict[str, Any]]:
    """GeoReport ``GET service requests`` (staff): by ids, or by code, dates and status.

    Without ids, the last 90 days (GeoReport's default window), at most 1000 requests.
    """
    flt: Doc = {}
    if service_request_id:
        ids = [i.strip() for i in service_request_id.split(",") if i.strip()][:100]
        flt["_id"] = {"$in": ids}
    else:
        end = end_date or datetime.now(UTC)
        start = start_date or end - timedelta(days=90)
        flt["submitted_at"] = {"$gte": start, "$lte": end}
    if service_code:
        flt["category"] = service_code.value
    closed = sorted(CLOSED)
    if status == "closed":
        flt["status"] = {"$in": closed}
    elif status == "open":
        flt["status"] = {"$nin": closed}
    flt.update(scope_filter(_staff) or {})
    docs = await service.page(flt, 1000)
    return [request_view(d, service.unit_names, full=True) for d in docs]
