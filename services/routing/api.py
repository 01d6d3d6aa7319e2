"""Routing's HTTP API: cases (a department sees only its own) and the policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.routing.config import RoutingSettings
from services.routing.domain.policy import Policy
from services.routing.store import CaseStore
from tongxin.contracts.enums import Tier
from tongxin.runtime.auth import Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import CurrentPrincipal, ServiceRuntime

router = APIRouter(prefix="/v1", tags=["cases"])


@dataclass
class RoutingContext:
    """What routing's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: RoutingSettings
    store: CaseStore
    policy: Policy


def get_ctx(request: Request) -> RoutingContext:
    """FastAPI dependency: routing's context."""
    ctx: RoutingContext = request.app.state.rt.extra["ctx"]
    return ctx


CtxDep = Annotated[RoutingContext, Depends(get_ctx)]

CASE_READERS = {Role.STAFF, Role.ADMIN, Role.DEPARTMENT, Role.PLATFORM}


def _visible_filter(p: Principal) -> dict[str, Any]:
    if p.role not in CASE_READERS:
        raise ApiError(403, "forbidden", "This role may not read cases.")
    if p.role == Role.DEPARTMENT:
        if not p.unit:
            raise ApiError(403, "forbidden", "A department token must name its unit.")
        return {"units": p.unit}
    return {}


def _view(doc: Doc) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["id"] = doc["_id"]
    return out


@router.get("/cases")
async def list_cases(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    tier: Tier | None = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Cases visible to the caller, newest first."""
    filt = _visible_filter(principal)
    if tier:
        filt["tier"] = tier.value
    if status:
        filt["status"] = status
    if request_id:
        filt["request_id"] = request_id
    return [_view(d) for d in await ctx.store.list(filt, limit)]


@router.get("/cases/{case_id}")
async def read_case(case_id: str, ctx: CtxDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """One case; a department gets 404 for a case not assigned to it."""
    filt = _visible_filter(principal)
    doc = await ctx.store.get(case_id)
    if doc is None or ("units" in filt and filt["units"] not in doc.get("units", [])):
        raise ApiError(404, "not_found", "No such case.")
    return _view(doc)


@router.get("/policy")
async def policy(ctx: CtxDep) -> dict[str, Any]:
    """The policy in force (durations already scaled by TONGXIN_DEADLINE_SCALE)."""
    p = ctx.policy
    return {
        "deadline_scale": ctx.settings.deadline_scale,
        "tiers": {
            t.value: {
                "acknowledge_s": d.acknowledge.total_seconds(),
                "resolve_s": d.resolve.total_seconds(),
            }
            for t, d in p.deadlines.items()
        },
        "department_of": {c.value: u for c, u in p.department_of.items()},
        "routine_categories": sorted(c.value for c in p.routine_categories),
        "volunteer_skill": {c.value: s.value for c, s in p.volunteer_skill.items()},
        "repeat_threshold": p.repeat_threshold,
    }
