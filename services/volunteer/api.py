"""Volunteer's HTTP API: the red-vest registry, squads and hours, the task walk, and the
special-care registry. Staff (``staff``/``admin``) manage; a volunteer acts on their own.

Deny by default: both routers require a bearer token for every route (a router
dependency), and each route then checks the role and the object. Community staff (a staff
token whose ``unit`` is a ``community:``) see and manage only their own community's care
recipients — personal details of vulnerable residents; another community's recipient
reads as 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pymongo.errors import DuplicateKeyError

from services.volunteer.care import CareVisits
from services.volunteer.config import VolunteerSettings
from services.volunteer.domain.care import VisitStatus
from services.volunteer.domain.places import Places
from services.volunteer.domain.tasks import TaskStatus
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
from services.volunteer.store import VolunteerStore, now_utc
from services.volunteer.walk import TaskWalk
from tongxin.contracts.enums import CareType, Skill
from tongxin.runtime.auth import Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import CurrentPrincipal, ServiceRuntime, require_principal

router = APIRouter(prefix="/v1", tags=["volunteers"], dependencies=[Depends(require_principal)])
care_router = APIRouter(
    prefix="/v1", tags=["special care"], dependencies=[Depends(require_principal)]
)


@dataclass
class VolunteerContext:
    """What volunteer's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: VolunteerSettings
    store: VolunteerStore
    places: Places
    walk: TaskWalk
    care: CareVisits


def get_ctx(request: Request) -> VolunteerContext:
    """FastAPI dependency: volunteer's context."""
    ctx: VolunteerContext = request.app.state.rt.extra["ctx"]
    return ctx


CtxDep = Annotated[VolunteerContext, Depends(get_ctx)]
STAFF = frozenset({Role.STAFF, Role.ADMIN})
IdPath = Annotated[str, Query(max_length=80)]


def is_staff(p: Principal) -> bool:
    """Community staff or an administrator."""
    return p.role in STAFF


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


def _view(doc: Doc) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["id"] = doc["_id"]
    return out


# --- registry --------------------------------------------------------------------------------


def _check_place(ctx: VolunteerContext, community: str, compound: str | None) -> None:
    bad = ctx.places.check(community, compound)
    if bad == "community":
        raise invalid("community", f"Unknown community {community!r}.")
    if bad == "compound":
        raise invalid("compound", f"Unknown compound {compound!r} in {community!r}.")


def _place_fields(ctx: VolunteerContext, doc: Doc) -> Doc:
    """Validate community/compound/coordinates; default coordinates from the compound."""
    _check_place(ctx, doc["community"], doc.get("compound"))
    lat, lng = doc.get("lat"), doc.get("lng")
    if (lat is None) != (lng is None):
        raise invalid("lat", "Give both lat and lng, or neither.")
    if lat is not None and lng is not None:
        if not ctx.places.within(lat, lng):
            raise invalid("lat", "The coordinates are outside the county.")
    else:
        doc["lat"], doc["lng"] = ctx.places.point(doc.get("compound"))
    return doc


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
    filt: dict[str, Any] = {}
    if skill:
        filt["skills"] = skill.value
    for k, v in (("community", community), ("compound", compound)):
        if v:
            filt[k] = v
    for k, b in (("active", active), ("party_member", party_member)):
        if b is not None:
            filt[k] = b
    return [_view(d) for d in await ctx.store.list_volunteers(filt, limit, after)]


@router.post("/volunteers", status_code=201)
async def create_volunteer(
    ctx: CtxDep, principal: CurrentPrincipal, body: VolunteerCreate
) -> dict[str, Any]:
    """Register a volunteer (staff). Unknown skill, community or compound → 422."""
    require_staff(principal, "register volunteers")
    doc = _place_fields(ctx, body.model_dump(mode="json", exclude={"id"}))
    now = now_utc()
    doc |= {"_id": body.id or await ctx.store.next_id("volunteer", "vol:"), "created_at": now}
    doc["updated_at"] = now
    try:
        await ctx.store.volunteers.insert_one(doc)
    except DuplicateKeyError as exc:
        raise ApiError(409, "already_exists", f"Volunteer {doc['_id']} exists.") from exc
    return _view(doc)


async def _volunteer_or_404(ctx: VolunteerContext, vid: str) -> Doc:
    doc = await ctx.store.get_volunteer(vid)
    if doc is None:
        raise ApiError(404, "not_found", f"No volunteer {vid}.")
    return doc


def _self_or_staff(principal: Principal, vid: str) -> None:
    if not is_staff(principal) and not (principal.role == Role.VOLUNTEER and principal.sub == vid):
        raise ApiError(403, "forbidden", "Staff, or the volunteer themself, only.")


@router.get("/volunteers/{vid}")
async def get_volunteer(ctx: CtxDep, principal: CurrentPrincipal, vid: str) -> dict[str, Any]:
    """One volunteer (staff, or the volunteer themself)."""
    _self_or_staff(principal, vid)
    return _view(await _volunteer_or_404(ctx, vid))


@router.patch("/volunteers/{vid}")
async def update_volunteer(
    ctx: CtxDep, principal: CurrentPrincipal, vid: str, body: VolunteerUpdate
) -> dict[str, Any]:
    """Change a volunteer (staff); a volunteer may change their own availability only."""
    _self_or_staff(principal, vid)
    changes = body.model_dump(mode="json", exclude_unset=True)
    if not is_staff(principal) and set(changes) - {"availability"}:
        raise ApiError(403, "forbidden", "A volunteer may change only their availability.")
    for key in ("name", "skills", "community", "max_tasks", "active", "party_member"):
        if key in changes and changes[key] is None:
            raise invalid(key, f"{key} cannot be null.")
    current = await _volunteer_or_404(ctx, vid)
    if {"community", "compound", "lat", "lng"} & set(changes):
        merged = {**current, **changes}
        if "compound" in changes and not {"lat", "lng"} & set(changes):
            merged["lat"] = merged["lng"] = None
        placed = _place_fields(ctx, merged)
        changes |= {k: placed.get(k) for k in ("community", "compound", "lat", "lng")}
    changes["updated_at"] = now_utc()
    await ctx.store.volunteers.update_one({"_id": vid}, {"$set": changes})
    return _view(await _volunteer_or_404(ctx, vid))


@router.delete("/volunteers/{vid}")
async def deactivate_volunteer(
    ctx: CtxDep, principal: CurrentPrincipal, vid: str
) -> dict[str, Any]:
    """Deactivate a volunteer (staff): kept for their hours, never offered tasks again."""
    require_staff(principal, "deactivate volunteers")
    await _volunteer_or_404(ctx, vid)
    await ctx.store.volunteers.update_one(
        {"_id": vid}, {"$set": {"active": False, "updated_at": now_utc()}}
    )
    return _view(await _volunteer_or_404(ctx, vid))


@router.get("/volunteers/{vid}/hours")
async def volunteer_hours(ctx: CtxDep, principal: CurrentPrincipal, vid: str) -> dict[str, Any]:
    """Hours of service of one volunteer: total, last 30 days, by skill, recent entries."""
    _self_or_staff(principal, vid)
    vol = await _volunteer_or_404(ctx, vid)
    days = ctx.settings.fairness_window_days
    h = await ctx.store.hours_of(vid, now_utc() - timedelta(days=days))
    return {
        "volunteer_id": vid,
        "name": vol["name"],
        "total_hours": round(h["total"]["hours"], 2),
        "completed": h["total"]["count"],
        "window_days": days,
        "recent_hours": round(h["recent"]["hours"], 2),
        "recent_completed": h["recent"]["count"],
        "by_skill": {k: round(v, 2) for k, v in sorted(h["by_skill"].items())},
        "entries": [_view(e) for e in h["entries"]],
    }


# --- squads and brigade ----------------------------------------------------------------------


async def _check_captain(ctx: VolunteerContext, captain: str | None, skill: str) -> None:
    if captain is None:
        return
    vol = await ctx.store.get_volunteer(captain)
    if vol is None or not vol.get("active", True):
        raise invalid("captain_id", f"Unknown or inactive volunteer {captain!r}.")
    if skill not in vol.get("skills", []):
        raise invalid("captain_id", f"The captain must have the squad's skill {skill!r}.")


async def _squad_view(ctx: VolunteerContext, doc: Doc, members: bool = False) -> dict[str, Any]:
    out = _view(doc)
    filt = {"skills": doc["skill"], "active": True}
    vols = await ctx.store.list_volunteers(filt, 500)
    out["member_count"] = len(vols)
    if members:
        out["members"] = [
            {"id": v["_id"], "name": v["name"], "party_member": v.get("party_member", False)}
            for v in vols
        ]
    return out


@router.get("/squads")
async def list_squads(ctx: CtxDep, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    """The brigade's squads 小分队 by skill, with their captain and size."""
    return [await _squad_view(ctx, s) for s in await ctx.store.list_squads()]


@router.post("/squads", status_code=201)
async def create_squad(
    ctx: CtxDep, principal: CurrentPrincipal, body: SquadCreate
) -> dict[str, Any]:
    """Form a squad (staff); the captain must be an active volunteer with its skill."""
    require_staff(principal, "form squads")
    await _check_captain(ctx, body.captain_id, body.skill.value)
    doc = body.model_dump(mode="json", exclude={"id"})
    doc["_id"] = body.id or f"squad:{body.skill.value}"
    doc["created_at"] = now_utc()
    try:
        await ctx.store.squads.insert_one(doc)
    except DuplicateKeyError as exc:
        raise ApiError(409, "already_exists", f"Squad {doc['_id']} exists.") from exc
    return await _squad_view(ctx, doc)


@router.get("/squads/leaderboard")
async def squad_leaderboard(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    days: Annotated[int | None, Query(ge=1, le=3660, description="default: all time")] = None,
) -> list[dict[str, Any]]:
    """Squads ranked by hours of service (in the last ``days``, or all time)."""
    since = now_utc() - timedelta(days=days) if days else None
    by_skill = await ctx.store.hours_by_skill(since)
    rows = []
    for s in await ctx.store.list_squads():
        hours, count, volunteers = by_skill.get(s["skill"], (0.0, 0, 0))
        rows.append(
            {
                "squad_id": s["_id"],
                "name": s["name"],
                "skill": s["skill"],
                "hours": round(hours, 2),
                "completed": count,
                "volunteers": volunteers,
            }
        )
    rows.sort(key=lambda r: (-r["hours"], -r["completed"], r["squad_id"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


@router.get("/squads/{squad_id}")
async def get_squad(ctx: CtxDep, principal: CurrentPrincipal, squad_id: str) -> dict[str, Any]:
    """One squad with its members."""
    doc = await ctx.store.squads.find_one({"_id": squad_id})
    if doc is None:
        raise ApiError(404, "not_found", f"No squad {squad_id}.")
    return await _squad_view(ctx, doc, members=is_staff(principal))


@router.patch("/squads/{squad_id}")
async def update_squad(
    ctx: CtxDep, principal: CurrentPrincipal, squad_id: str, body: SquadUpdate
) -> dict[str, Any]:
    """Rename a squad or change its captain (staff)."""
    require_staff(principal, "change squads")
    doc = await ctx.store.squads.find_one({"_id": squad_id})
    if doc is None:
        raise ApiError(404, "not_found", f"No squad {squad_id}.")
    changes = body.model_dump(mode="json", exclude_unset=True)
    if changes.get("name", "") is None:
        raise invalid("name", "name cannot be null.")
    if "captain_id" in changes:
        await _check_captain(ctx, changes["captain_id"], doc["skill"])
    if changes:
        await ctx.store.squads.update_one({"_id": squad_id}, {"$set": changes})
    return await _squad_view(ctx, {**doc, **changes})


@router.get("/brigade")
async def get_brigade(ctx: CtxDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """The red-vest brigade: its leader, squads and size."""
    doc = await ctx.store.brigade.find_one({"_id": "brigade"}) or {"_id": "brigade"}
    squads = [await _squad_view(ctx, s) for s in await ctx.store.list_squads()]
    active, _open, _cap = await ctx.store.utilisation()
    return {**_view(doc), "active_volunteers": active, "squads": squads}


@router.patch("/brigade")
async def update_brigade(
    ctx: CtxDep, principal: CurrentPrincipal, body: BrigadeUpdate
) -> dict[str, Any]:
    """Change the brigade's name or leader (staff)."""
    require_staff(principal, "change the brigade")
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if changes:
        await ctx.store.brigade.update_one({"_id": "brigade"}, {"$set": changes}, upsert=True)
    return await get_brigade(ctx, principal)


# --- tasks -----------------------------------------------------------------------------------


def _task_view(doc: Doc, principal: Principal) -> dict[str, Any]:
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
    filt: dict[str, Any] = {}
    if principal.role == Role.VOLUNTEER:
        filt["volunteer_id"] = principal.sub
    elif not is_staff(principal):
        raise ApiError(403, "forbidden", "This role may not read tasks.")
    elif volunteer_id:
        filt["volunteer_id"] = volunteer_id
    for k, v in (("request_id", request_id), ("case_id", case_id)):
        if v:
            filt[k] = v
    if status:
        filt["status"] = status.value
    return [_task_view(d, principal) for d in await ctx.store.list_tasks(filt, limit)]


@router.get("/tasks/{task_id}")
async def get_task(ctx: CtxDep, principal: CurrentPrincipal, task_id: str) -> dict[str, Any]:
    """One task with every offer and its scores (staff; a volunteer only their own)."""
    doc = await ctx.store.get_task(task_id)
    if doc is None:
        raise ApiError(404, "not_found", f"No task {task_id}.")
    if not is_staff(principal) and not (
        principal.role == Role.VOLUNTEER and principal.sub in doc.get("tried", [])
    ):
        raise ApiError(403, "forbidden", "This task was never offered to you.")
    return _task_view(doc, principal)


def _volunteer_only(principal: Principal) -> None:
    if principal.role != Role.VOLUNTEER:
        raise ApiError(403, "forbidden", "Only the volunteer the task is offered to may answer.")


@router.post("/tasks/{task_id}/accept")
async def accept_task(ctx: CtxDep, principal: CurrentPrincipal, task_id: str) -> dict[str, Any]:
    """Accept an offer before its deadline (the volunteer it is offered to)."""
    _volunteer_only(principal)
    return _task_view(await ctx.walk.accept(task_id, principal), principal)


@router.post("/tasks/{task_id}/decline")
async def decline_task(
    ctx: CtxDep, principal: CurrentPrincipal, task_id: str, body: DeclineIn | None = None
) -> dict[str, Any]:
    """Decline an offer; it goes to the next candidate (never back to you)."""
    _volunteer_only(principal)
    reason = body.reason if body else None
    return _task_view(await ctx.walk.decline(task_id, principal, reason), principal)


@router.post("/tasks/{task_id}/complete")
async def complete_task(
    ctx: CtxDep, principal: CurrentPrincipal, task_id: str, body: CompleteIn
) -> dict[str, Any]:
    """Complete an accepted task with hours (0 < hours ≤ 24) and a note."""
    if principal.role != Role.VOLUNTEER and not is_staff(principal):
        raise ApiError(403, "forbidden", "This role may not complete tasks.")
    return _task_view(await ctx.walk.complete(task_id, principal, body.hours, body.note), principal)


# --- special care ----------------------------------------------------------------------------


async def _check_assigned(ctx: VolunteerContext, ids: list[str]) -> None:
    missing = sorted(set(ids) - await ctx.store.existing_volunteers(ids))
    if missing:
        raise invalid("assigned_volunteers", f"Unknown or inactive volunteers: {missing}.")


def _visit_view(doc: Doc, principal: Principal) -> dict[str, Any]:
    out = _view(doc)
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
    filt: dict[str, Any] = {}
    confined = staff_community(principal)
    if confined and community and community != confined:
        return []
    community = confined or community
    if community:
        filt["community"] = community
    if care_type:
        filt["care_type"] = care_type.value
    if active is not None:
        filt["active"] = active
    cur = ctx.store.recipients.find(filt).sort("_id", 1).limit(limit)
    return [_view(d) async for d in cur]


@care_router.post("/care-recipients", status_code=201)
async def create_recipient(
    ctx: CtxDep, principal: CurrentPrincipal, body: CareRecipientCreate
) -> dict[str, Any]:
    """Register a recipient with consent (staff); the first visit falls due at once."""
    require_staff(principal, "register care recipients")
    confined = staff_community(principal)
    if confined and body.community != confined:
        raise ApiError(403, "forbidden", "Community staff register recipients of their community.")
    _check_place(ctx, body.community, body.compound)
    await _check_assigned(ctx, body.assigned_volunteers)
    doc = body.model_dump(mode="json", exclude={"id"})
    doc["_id"] = body.id or await ctx.store.next_id("care_recipient", "care:")
    doc["registered_by"] = principal.sub
    return _view(await ctx.care.register(doc))


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
    community = confined or community
    now = now_utc()
    out = []
    for v in await ctx.store.overdue_visits(community):
        rec = await ctx.store.get_recipient(v["recipient_id"]) or {}
        out.append(
            {
                **_view(v),
                "recipient": {
                    "id": v["recipient_id"],
                    "name": rec.get("name"),
                    "care_type": rec.get("care_type"),
                    "address": rec.get("address"),
                    "phone": rec.get("phone"),
                },
                "overdue_hours": round((now - v["deadline"]).total_seconds() / 3600, 2),
            }
        )
    return out


async def _recipient_or_404(ctx: VolunteerContext, rid: str, principal: Principal) -> Doc:
    """The recipient, or 404 when unknown or another community's (no probing)."""
    rec = await ctx.store.get_recipient(rid)
    confined = staff_community(principal)
    if rec is None or (confined and rec.get("community") != confined):
        raise ApiError(404, "not_found", f"No care recipient {rid}.")
    return rec


@care_router.get("/care-recipients/{rid}")
async def get_recipient(ctx: CtxDep, principal: CurrentPrincipal, rid: str) -> dict[str, Any]:
    """One recipient (staff)."""
    require_staff(principal, "read the special-care registry")
    return _view(await _recipient_or_404(ctx, rid, principal))


@care_router.patch("/care-recipients/{rid}")
async def update_recipient(
    ctx: CtxDep, principal: CurrentPrincipal, rid: str, body: CareRecipientUpdate
) -> dict[str, Any]:
    """Change a recipient (staff); a new cadence moves the next visit, inactive stops them."""
    require_staff(principal, "change the special-care registry")
    rec = await _recipient_or_404(ctx, rid, principal)
    changes = body.model_dump(mode="json", exclude_unset=True)
    for key in ("name", "cadence_days", "assigned_volunteers", "active"):
        if key in changes and changes[key] is None:
            raise invalid(key, f"{key} cannot be null.")
    if "assigned_volunteers" in changes:
        await _check_assigned(ctx, changes["assigned_volunteers"])
    return _view(await ctx.care.update(rec, changes))


@care_router.get("/care-recipients/{rid}/visits")
async def recipient_visits(
    ctx: CtxDep, principal: CurrentPrincipal, rid: str
) -> list[dict[str, Any]]:
    """A recipient's visits, newest first (staff)."""
    require_staff(principal, "read the special-care registry")
    await _recipient_or_404(ctx, rid, principal)
    cur = ctx.store.visits.find({"recipient_id": rid}).sort("seq", -1).limit(200)
    return [_visit_view(d, principal) async for d in cur]


@care_router.get("/care-visits")
async def list_visits(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    status: VisitStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Care visits: a volunteer sees the ones assigned to them (no personal details)."""
    filt: dict[str, Any] = {}
    if principal.role == Role.VOLUNTEER:
        filt["assigned_volunteers"] = principal.sub
    elif not is_staff(principal):
        raise ApiError(403, "forbidden", "This role may not read care visits.")
    if status:
        filt["status"] = status.value
    cur = ctx.store.visits.find(filt).sort("due_at", -1).limit(limit)
    return [_visit_view(d, principal) async for d in cur]


@care_router.post("/care-visits/{visit_id}/record")
async def record_visit(
    ctx: CtxDep, principal: CurrentPrincipal, visit_id: str, body: VisitRecordIn
) -> dict[str, Any]:
    """Record a visit that was made, with hours (an assigned volunteer, or staff)."""
    doc = await ctx.care.record(visit_id, principal, body.hours, body.note, body.visited_at)
    return _visit_view(doc, principal)
