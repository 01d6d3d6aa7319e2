"""Volunteer's HTTP API: the red-vest registry, squads and hours, the task walk, and the
special-care registry. Staff (``staff``/``admin``) manage; a volunteer acts on their own.

Deny by default: both routers require a bearer token for every route (a router
dependency), and each route then checks the role and the object. Community staff (a staff
token whose ``unit`` is a ``community:``) see and manage only their own community's care
recipients — personal details of vulnerable residents; another community's recipient
reads as 404.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request

from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.care import Visit, VisitStatus
from services.volunteer.domain.refusals import Conflict, Forbidden, Invalid, NotFound, Rejected
from services.volunteer.domain.tasks import Action, Task, TaskStatus
from services.volunteer.domain.volunteers import Squad, Volunteer
from services.volunteer.schemas import (
    BrigadeUpdate,
    CareRecipientCreate,
    CareRecipientUpdate,
    CompleteIn,
    DeclineIn,
    SquadCreate,
    SquadUpdate,
    VisitRecordIn,
    VolunteerCreate,
    VolunteerUpdate,
)
from services.volunteer.service import (
    Answer,
    ChangeRecipient,
    EditBrigade,
    EditSquad,
    EditVolunteer,
    NewSquad,
    NewVolunteer,
    RecordVisit,
    Register,
    VolunteerService,
)
from tongxin.contracts.enums import CareType, Skill
from tongxin.runtime.auth import STAFF_ROLES, CurrentPrincipal, Principal, Role, require_principal
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import ServiceRuntime, WriteDeadline

router = APIRouter(prefix="/v1", tags=["volunteers"], dependencies=[Depends(require_principal)])
care_router = APIRouter(
    prefix="/v1", tags=["special care"], dependencies=[Depends(require_principal)]
)

T = TypeVar("T")


@dataclass
class VolunteerContext:
    """What volunteer's routes share, built in the lifespan."""

    rt: ServiceRuntime
    settings: VolunteerSettings
    service: VolunteerService


def get_ctx(request: Request) -> VolunteerContext:
    """FastAPI dependency: volunteer's context."""
    ctx: VolunteerContext = request.app.state.rt.extra["ctx"]
    return ctx


CtxDep = Annotated[VolunteerContext, Depends(get_ctx)]


def is_staff(p: Principal) -> bool:
    """Community staff or an administrator."""
    return p.role in STAFF_ROLES


def require_staff(p: Principal, what: str) -> None:
    """403 unless staff."""
    if not is_staff(p):
        raise ApiError(403, "forbidden", f"Only community staff {what}.")


def staff_community(p: Principal) -> str | None:
    """The community a staff token is confined to (its ``community:`` unit), if any."""
    if p.role == Role.STAFF and p.unit and p.unit.startswith("community:"):
        return p.unit
    return None


def invalid(field: str, message: str) -> ApiError:
    """A 422 in the SPEC shape pointing at one body field."""
    return ApiError(
        422, "validation_error", message, [{"loc": ["body", field], "msg": message, "type": field}]
    )


def _answer_for(exc: Rejected) -> ApiError:
    """The HTTP answer to a refusal of the rules."""
    if isinstance(exc, Invalid):
        return invalid(exc.field, exc.message)
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", exc.message)
    if isinstance(exc, Forbidden):
        return ApiError(403, exc.code, exc.message)
    if isinstance(exc, Conflict):
        return ApiError(409, exc.code, exc.message)
    return ApiError(409, exc.code, exc.message)


async def _decided(outcome: Awaitable[T]) -> T:
    """The outcome of a write, or its refusal as the HTTP answer."""
    try:
        return await outcome
    except Rejected as exc:
        raise _answer_for(exc) from exc


def _view(doc: Doc) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["id"] = doc["_id"]
    return out


# --- registry --------------------------------------------------------------------------------


def _volunteer_view(vol: Volunteer) -> dict[str, Any]:
    return _view(vol.to_doc())


@router.get("/volunteers")
async def list_volunteers(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    skill: Skill | None = None,
    community: Annotated[str | None, Query(max_length=64)] = None,
    compound: Annotated[str | None, Query(max_length=64)] = None,
    active: bool | None = None,
    party_member: bool | None = None,
    after: Annotated[str | None, Query(max_length=80, description="cursor: last id seen")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """The red-vest registry (staff), by id; page with ``after=<last id>``."""
    require_staff(principal, "read the volunteer registry")
    found = await ctx.service.registry.volunteers(
        skill=skill.value if skill else None,
        community=community or None,
        compound=compound or None,
        active=active,
        party_member=party_member,
        after=after,
        limit=limit,
    )
    return [_volunteer_view(v) for v in found]


@router.post("/volunteers", status_code=201)
async def create_volunteer(
    ctx: CtxDep, principal: CurrentPrincipal, body: VolunteerCreate, deadline: WriteDeadline
) -> dict[str, Any]:
    """Register a volunteer (staff). Unknown skill, community or compound → 422."""
    require_staff(principal, "register volunteers")
    item = NewVolunteer(body.model_dump(mode="json", exclude={"id"}), body.id)
    vol = await _decided(ctx.service.registry.edit(item, deadline))
    assert isinstance(vol, Volunteer)
    return _volunteer_view(vol)


def _self_or_staff(principal: Principal, vid: str) -> None:
    if not is_staff(principal) and not (principal.role == Role.VOLUNTEER and principal.sub == vid):
        raise ApiError(403, "forbidden", "Staff, or the volunteer themself, only.")


async def _volunteer_or_404(ctx: VolunteerContext, vid: str) -> Volunteer:
    vol = await ctx.service.registry.volunteer(vid)
    if vol is None:
        raise ApiError(404, "not_found", f"No volunteer {vid}.")
    return vol


@router.get("/volunteers/{vid}")
async def get_volunteer(ctx: CtxDep, principal: CurrentPrincipal, vid: str) -> dict[str, Any]:
    """One volunteer (staff, or the volunteer themself)."""
    _self_or_staff(principal, vid)
    return _volunteer_view(await _volunteer_or_404(ctx, vid))


@router.patch("/volunteers/{vid}")
async def update_volunteer(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    vid: str,
    body: VolunteerUpdate,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """Change a volunteer (staff); a volunteer may change their own availability only."""
    _self_or_staff(principal, vid)
    changes = body.model_dump(mode="json", exclude_unset=True)
    if not is_staff(principal) and set(changes) - {"availability"}:
        raise ApiError(403, "forbidden", "A volunteer may change only their availability.")
    for key in ("name", "skills", "community", "max_tasks", "active", "party_member"):
        if key in changes and changes[key] is None:
            raise invalid(key, f"{key} cannot be null.")
    vol = await _decided(ctx.service.registry.edit(EditVolunteer(vid, changes), deadline))
    assert isinstance(vol, Volunteer)
    return _volunteer_view(vol)


@router.delete("/volunteers/{vid}")
async def deactivate_volunteer(
    ctx: CtxDep, principal: CurrentPrincipal, vid: str, deadline: WriteDeadline
) -> dict[str, Any]:
    """Deactivate a volunteer (staff): kept for their hours, never offered tasks again."""
    require_staff(principal, "deactivate volunteers")
    item = EditVolunteer(vid, {"active": False})
    vol = await _decided(ctx.service.registry.edit(item, deadline))
    assert isinstance(vol, Volunteer)
    return _volunteer_view(vol)


@router.get("/volunteers/{vid}/hours")
async def volunteer_hours(ctx: CtxDep, principal: CurrentPrincipal, vid: str) -> dict[str, Any]:
    """Hours of service of one volunteer: total, last 30 days, by skill, recent entries."""
    _self_or_staff(principal, vid)
    vol = await _volunteer_or_404(ctx, vid)
    h = await ctx.service.registry.hours_of(vid)
    return {
        "volunteer_id": vid,
        "name": vol.name,
        "total_hours": round(h.total_hours, 2),
        "completed": h.completed,
        "window_days": ctx.settings.fairness_window_days,
        "recent_hours": round(h.recent_hours, 2),
        "recent_completed": h.recent_completed,
        "by_skill": {k: round(v, 2) for k, v in sorted(h.by_skill.items())},
        "entries": [_view(e.to_doc()) for e in h.entries],
    }


# --- squads and brigade ----------------------------------------------------------------------


def _squad_view(squad: Squad, members: list[Volunteer], show: bool = False) -> dict[str, Any]:
    out = _view(squad.to_doc())
    out["member_count"] = len(members)
    if show:
        out["members"] = [
            {"id": v.id, "name": v.name, "party_member": v.party_member} for v in members
        ]
    return out


@router.get("/squads")
async def list_squads(ctx: CtxDep, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """The brigade's squads 小分队 by skill, with their captain and size."""
    return [_squad_view(s, m) for s, m in await ctx.service.registry.squads()]


@router.post("/squads", status_code=201)
async def create_squad(
    ctx: CtxDep, principal: CurrentPrincipal, body: SquadCreate, deadline: WriteDeadline
) -> dict[str, Any]:
    """Form a squad (staff); the captain must be an active volunteer with its skill."""
    require_staff(principal, "form squads")
    item = NewSquad(body.model_dump(mode="json", exclude={"id"}), body.id)
    squad = await _decided(ctx.service.registry.edit(item, deadline))
    assert isinstance(squad, Squad)
    return _squad_view(squad, await ctx.service.registry.members(squad))


@router.get("/squads/leaderboard")
async def squad_leaderboard(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    days: Annotated[int | None, Query(ge=1, le=3660, description="default: all time")] = None,
) -> list[dict[str, Any]]:
    """Squads ranked by hours of service (in the last ``days``, or all time)."""
    since = ctx.service.clock() - timedelta(days=days) if days else None
    rows: list[dict[str, Any]] = [
        {
            "squad_id": s.id,
            "name": s.name,
            "skill": s.skill,
            "hours": round(h.hours, 2),
            "completed": h.completed,
            "volunteers": h.volunteers,
        }
        for s, h in await ctx.service.registry.leaderboard(since)
    ]
    rows.sort(key=lambda r: (-r["hours"], -r["completed"], r["squad_id"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


@router.get("/squads/{squad_id}")
async def get_squad(ctx: CtxDep, principal: CurrentPrincipal, squad_id: str) -> dict[str, Any]:
    """One squad with its members."""
    found = await ctx.service.registry.squad(squad_id)
    if found is None:
        raise ApiError(404, "not_found", f"No squad {squad_id}.")
    squad, members = found
    return _squad_view(squad, members, show=is_staff(principal))


@router.patch("/squads/{squad_id}")
async def update_squad(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    squad_id: str,
    body: SquadUpdate,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """Rename a squad or change its captain (staff)."""
    require_staff(principal, "change squads")
    item = EditSquad(squad_id, body.model_dump(mode="json", exclude_unset=True))
    squad = await _decided(ctx.service.registry.edit(item, deadline))
    assert isinstance(squad, Squad)
    return _squad_view(squad, await ctx.service.registry.members(squad))


@router.get("/brigade")
async def get_brigade(ctx: CtxDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """The red-vest brigade: its leader, squads and size."""
    brigade, squads, active = await ctx.service.registry.brigade()
    return {
        **_view(brigade.to_doc()),
        "active_volunteers": active,
        "squads": [_squad_view(s, m) for s, m in squads],
    }


@router.patch("/brigade")
async def update_brigade(
    ctx: CtxDep, principal: CurrentPrincipal, body: BrigadeUpdate, deadline: WriteDeadline
) -> dict[str, Any]:
    """Change the brigade's name or leader (staff)."""
    require_staff(principal, "change the brigade")
    await _decided(
        ctx.service.registry.edit(EditBrigade(body.model_dump(exclude_unset=True)), deadline)
    )
    return await get_brigade(ctx, principal)


# --- tasks -----------------------------------------------------------------------------------


def _task_view(task: Task, principal: Principal) -> dict[str, Any]:
    doc = task.to_doc()
    out = _view(doc)
    outcomes = doc.get("offer_outcomes") or {}
    out["offers"] = [
        {**o, **outcomes.get(str(o["attempt"]), {"outcome": "pending"})}
        for o in doc.get("offers", [])
    ]
    out.pop("offer_outcomes", None)
    if not is_staff(principal):
        # a volunteer sees their own offer and scores, not other volunteers'
        me = principal.sub
        out["offers"] = [o for o in out["offers"] if o["volunteer_id"] == me]
        for o in out["offers"]:
            o.pop("ranking", None)
            o.pop("excluded", None)
        for k in ("ranking", "excluded", "tried", "history", "lat", "lng"):
            out.pop(k, None)
    return out


@router.get("/tasks")
async def list_tasks(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    case_id: Annotated[str | None, Query(max_length=64)] = None,
    volunteer_id: Annotated[str | None, Query(max_length=80)] = None,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Tasks with their score breakdown, newest first; a volunteer sees only their own."""
    if principal.role == Role.VOLUNTEER:
        volunteer_id = principal.sub
    elif not is_staff(principal):
        raise ApiError(403, "forbidden", "This role may not read tasks.")
    found = await ctx.service.tasks.search(
        volunteer_id=volunteer_id or None,
        request_id=request_id or None,
        case_id=case_id or None,
        status=status,
        limit=limit,
    )
    return [_task_view(t, principal) for t in found]


@router.get("/tasks/{task_id}")
async def get_task(ctx: CtxDep, principal: CurrentPrincipal, task_id: str) -> dict[str, Any]:
    """One task with every offer and its scores (staff; a volunteer only their own)."""
    task = await ctx.service.tasks.get(task_id)
    if task is None:
        raise ApiError(404, "not_found", f"No task {task_id}.")
    if not is_staff(principal) and not (
        principal.role == Role.VOLUNTEER and principal.sub in task.tried
    ):
        raise ApiError(403, "forbidden", "This task was never offered to you.")
    return _task_view(task, principal)


def _volunteer_only(principal: Principal) -> None:
    if principal.role != Role.VOLUNTEER:
        raise ApiError(403, "forbidden", "Only the volunteer the task is offered to may answer.")


async def _answer(ctx: VolunteerContext, item: Answer, deadline: float | None) -> dict[str, Any]:
    task = await _decided(ctx.service.tasks.answer(item, deadline))
    return _task_view(task, item.by)


@router.post("/tasks/{task_id}/accept")
async def accept_task(
    ctx: CtxDep, principal: CurrentPrincipal, task_id: str, deadline: WriteDeadline
) -> dict[str, Any]:
    """Accept an offer before its deadline (the volunteer it is offered to)."""
    _volunteer_only(principal)
    return await _answer(ctx, Answer(task_id, Action.ACCEPT, principal), deadline)


@router.post("/tasks/{task_id}/decline")
async def decline_task(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    task_id: str,
    deadline: WriteDeadline,
    body: DeclineIn | None = None,
) -> dict[str, Any]:
    """Decline an offer; it goes to the next candidate (never back to you)."""
    _volunteer_only(principal)
    reason = body.reason if body else None
    return await _answer(ctx, Answer(task_id, Action.DECLINE, principal, reason=reason), deadline)


@router.post("/tasks/{task_id}/complete")
async def complete_task(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    task_id: str,
    body: CompleteIn,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """Complete an accepted task with hours (0 < hours ≤ 24) and a note."""
    if principal.role != Role.VOLUNTEER and not is_staff(principal):
        raise ApiError(403, "forbidden", "This role may not complete tasks.")
    item = Answer(task_id, Action.COMPLETE, principal, hours=body.hours, note=body.note)
    return await _answer(ctx, item, deadline)


# --- special care ----------------------------------------------------------------------------


def _visit_view(visit: Visit, principal: Principal) -> dict[str, Any]:
    out = _view(visit.to_doc())
    if not is_staff(principal):
        out.pop("note", None)
    return out


@care_router.get("/care-recipients")
async def list_recipients(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    community: Annotated[str | None, Query(max_length=64)] = None,
    care_type: CareType | None = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Registered special-care recipients (staff only: they are personal details)."""
    require_staff(principal, "read the special-care registry")
    confined = staff_community(principal)
    if confined and community and community != confined:
        return []
    found = await ctx.service.care.recipients(
        community=confined or community or None, care_type=care_type, active=active, limit=limit
    )
    return [_view(r.to_doc()) for r in found]


@care_router.post("/care-recipients", status_code=201)
async def create_recipient(
    ctx: CtxDep, principal: CurrentPrincipal, body: CareRecipientCreate, deadline: WriteDeadline
) -> dict[str, Any]:
    """Register a recipient with consent (staff); the first visit falls due at once."""
    require_staff(principal, "register care recipients")
    confined = staff_community(principal)
    if confined and body.community != confined:
        raise ApiError(403, "forbidden", "Community staff register recipients of their community.")
    item = Register(body.model_dump(mode="json", exclude={"id"}), body.id, by=principal.sub)
    return _view((await _decided(ctx.service.care.register(item, deadline))).to_doc())


@care_router.get("/care-recipients/overdue")
async def overdue_visits(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    community: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    """Visits that were missed and not yet made, oldest first, with the recipient (staff)."""
    require_staff(principal, "read overdue visits")
    confined = staff_community(principal)
    if confined and community and community != confined:
        return []
    now = ctx.service.clock()
    return [
        {
            **_view(v.to_doc()),
            "recipient": {
                "id": v.recipient_id,
                "name": rec.name if rec else None,
                "care_type": rec.care_type if rec else None,
                "address": rec.address if rec else None,
                "phone": rec.phone if rec else None,
            },
            "overdue_hours": round((now - v.deadline).total_seconds() / 3600, 2),
        }
        for v, rec in await ctx.service.care.overdue(confined or community or None)
    ]


def _confined(principal: Principal) -> str | None:
    """The community a caller's recipients are confined to (None: every community)."""
    return staff_community(principal)


@care_router.get("/care-recipients/{rid}")
async def get_recipient(ctx: CtxDep, principal: CurrentPrincipal, rid: str) -> dict[str, Any]:
    """One recipient (staff)."""
    require_staff(principal, "read the special-care registry")
    # another community's recipient reads exactly like an unknown one (no probing)
    rec = await ctx.service.care.recipient(rid, _confined(principal))
    if rec is None:
        raise ApiError(404, "not_found", f"No care recipient {rid}.")
    return _view(rec.to_doc())


@care_router.patch("/care-recipients/{rid}")
async def update_recipient(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    rid: str,
    body: CareRecipientUpdate,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """Change a recipient (staff); a new cadence moves the next visit, inactive stops them."""
    require_staff(principal, "change the special-care registry")
    changes = body.model_dump(mode="json", exclude_unset=True)
    item = ChangeRecipient(rid, changes, community=_confined(principal))
    return _view((await _decided(ctx.service.care.change(item, deadline))).to_doc())


@care_router.get("/care-recipients/{rid}/visits")
async def recipient_visits(
    ctx: CtxDep, principal: CurrentPrincipal, rid: str
) -> list[dict[str, Any]]:
    """A recipient's visits, newest first (staff)."""
    require_staff(principal, "read the special-care registry")
    if await ctx.service.care.recipient(rid, _confined(principal)) is None:
        raise ApiError(404, "not_found", f"No care recipient {rid}.")
    return [_visit_view(v, principal) for v in await ctx.service.care.visits_of(rid)]


@care_router.get("/care-visits")
async def list_visits(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    status: VisitStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Care visits: a volunteer sees the ones assigned to them (no personal details)."""
    assigned_to: str | None = None
    if principal.role == Role.VOLUNTEER:
        assigned_to = principal.sub
    elif not is_staff(principal):
        raise ApiError(403, "forbidden", "This role may not read care visits.")
    found = await ctx.service.care.visits(assigned_to=assigned_to, status=status, limit=limit)
    return [_visit_view(v, principal) for v in found]


@care_router.post("/care-visits/{visit_id}/record")
async def record_visit(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    visit_id: str,
    body: VisitRecordIn,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """Record a visit that was made, with hours (an assigned volunteer, or staff)."""
    item = RecordVisit(visit_id, principal, body.hours, body.note, body.visited_at)
    return _visit_view(await _decided(ctx.service.care.record(item, deadline)), principal)
