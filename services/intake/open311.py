"""The Open311 GeoReport v2 facade under ``/open311/v2/`` (JSON format only).

Reads are public, as GeoReport has them: without credentials a request shows its public
view (status, service, agency, times — no text, place or contact); staff read it whole.
Errors use the platform's error shape (SPEC §4), except a missing or wrong ``api_key``,
which GeoReport clients expect as its list of errors (``[{"code": 403, "description"}]``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.intake.api import ServiceDep, invalid
from services.intake.domain.open311 import (
    CLOSED,
    api_key_valid,
    form_loc,
    form_to_body,
    public_view,
    request_view,
    service_definition,
    services,
)
from services.intake.domain.requests import RequestCreate
from services.intake.limits import limit_anonymous
from services.intake.service import Invalid, is_staff, pydantic_errors, scope_filter
from tongxin.contracts.enums import Category
from tongxin.runtime.auth import OptionalPrincipal
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import WriteDeadline

router = APIRouter(prefix="/open311/v2", tags=["open311"])

MAX_FORM_FIELDS = 60
CODES = frozenset(c.value for c in Category)


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


def georeport_error(status: int, description: str) -> JSONResponse:
    """An error in GeoReport's own shape, for what its clients handle themselves."""
    return JSONResponse([{"code": status, "description": description}], status_code=status)


@router.post(
    "/requests.json",
    status_code=201,
    response_model=None,
    responses={403: {"description": 'Missing or wrong api_key: [{"code": 403, "description"}]'}},
)
async def post_request(
    request: Request,
    service: ServiceDep,
    principal: OptionalPrincipal,
    deadline: WriteDeadline,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=128)] = None,
) -> list[dict[str, Any]] | JSONResponse:
    """GeoReport ``POST service request`` (``application/x-www-form-urlencoded``).

    With keys configured, ``api_key`` must be one of them unless the caller has a token;
    a keyed client is accountable and not held to the anonymous limit."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        raise ApiError(
            415 if ctype else 400,
            "unsupported_media_type",
            "Post the request form-encoded, as GeoReport v2 defines.",
        )
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    keys = service.settings.open311_api_keys()
    keyed = bool(keys) and api_key_valid(fields.get("api_key"), keys)
    if principal is None and not keyed:
        if keys:
            return georeport_error(
                403, "Invalid api_key." if fields.get("api_key") else "An api_key is required."
            )
        limit_anonymous(request)
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
    request: Request,
    request_id: str,
    service: ServiceDep,
    principal: OptionalPrincipal,
    tracking_code: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    """GeoReport ``GET service request``: the public view; staff read it whole, the
    resident (``tracking_code``) with its compound and newest note."""
    if principal is None:
        limit_anonymous(request, read=True)
    if is_staff(principal) or tracking_code:
        req, staff = await service.authorize(request_id, principal, tracking_code)
        return [request_view(req.to_doc(), service.unit_names, full=staff)]
    req = await service.read_public(request_id)
    return [public_view(req.to_doc(), service.unit_names)]


def _comma_list(value: str | None, name: str, allowed: frozenset[str]) -> set[str]:
    """A GeoReport comma-delimited parameter; 422 naming it if a value is not allowed."""
    values = {v.strip() for v in (value or "").split(",") if v.strip()}
    wrong = sorted(values - allowed)
    if wrong:
        raise ApiError(
            422,
            "validation_error",
            "The request is not valid.",
            [{"loc": ["query", name], "msg": f"unknown: {', '.join(wrong)}", "type": "enum"}],
        )
    return values


@router.get("/requests.json")
async def list_requests(
    request: Request,
    service: ServiceDep,
    principal: OptionalPrincipal,
    service_request_id: Annotated[str | None, Query(max_length=2000)] = None,
    service_code: Annotated[str | None, Query(max_length=1000)] = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
) -> list[dict[str, Any]]:
    """GeoReport ``GET service requests``: by ids, or by codes, dates and status (comma
    lists); the public view of each, or the full one for staff within their scope.

    Without ids, the last 90 days (GeoReport's default window), at most 1000 requests.
    """
    staff = is_staff(principal)
    if principal is None:
        limit_anonymous(request, read=True)
    codes = _comma_list(service_code, "service_code", CODES)
    statuses = _comma_list(status, "status", frozenset({"open", "closed"}))
    flt: Doc = {}
    if service_request_id:
        ids = [i.strip() for i in service_request_id.split(",") if i.strip()][:100]
        flt["_id"] = {"$in": ids}
    else:
        end = end_date or datetime.now(UTC)
        start = start_date or end - timedelta(days=90)
        flt["submitted_at"] = {"$gte": start, "$lte": end}
    if codes:
        flt["category"] = next(iter(codes)) if len(codes) == 1 else {"$in": sorted(codes)}
    closed = sorted(CLOSED)
    if statuses == {"closed"}:
        flt["status"] = {"$in": closed}
    elif statuses == {"open"}:
        flt["status"] = {"$nin": closed}
    if staff:
        assert principal is not None
        flt.update(scope_filter(principal) or {})
    docs = await service.page(flt, 1000)
    if staff:
        return [request_view(d, service.unit_names, full=True) for d in docs]
    return [public_view(d, service.unit_names) for d in docs]
