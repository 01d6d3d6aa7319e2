"""Volunteer's HTTP API: the registry and tasks (a volunteer sees only their own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.volunteer.config import VolunteerSettings
from services.volunteer.store import VolunteerStore
from tongxin.contracts.enums import Skill
from tongxin.runtime.auth import Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import CurrentPrincipal, ServiceRuntime

router = APIRouter(prefix="/v1", tags=["volunteers"])


@dataclass
class VolunteerContext:
    """What volunteer's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: VolunteerSettings
    store: VolunteerStore


def get_ctx(request: Request) -> VolunteerContext:
    """FastAPI dependency: volunteer's context."""
    ctx: VolunteerContext = request.app.state.rt.extra["ctx"]
    return ctx


CtxDep = Annotated[VolunteerContext, Depends(get_ctx)]
STAFF = {Role.STAFF, Role.ADMIN}


def _view(doc: Doc) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["id"] = doc["_id"]
    return out


@router.get("/volunteers")
async def list_volunteers(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    skill: Skill | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """The red-vest registry (staff)."""
    if principal.role not in STAFF:
        raise ApiError(403, "forbidden", "Only community staff read the volunteer registry.")
    filt: dict[str, Any] = {"skills": skill.value} if skill else {}
    return [_view(d) for d in await ctx.store.list_volunteers(filt, limit)]


@router.get("/tasks")
async def list_tasks(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Tasks with their score breakdown; a volunteer sees only their own."""
    filt: dict[str, Any] = {}
    if principal.role == Role.VOLUNTEER:
        filt["volunteer_id"] = principal.sub
    elif principal.role not in STAFF:
        raise ApiError(403, "forbidden", "This role may not read tasks.")
    if request_id:
        filt["request_id"] = request_id
    if status:
        filt["status"] = status
    return [_view(d) for d in await ctx.store.list_tasks(filt, limit)]
