"""Routing's HTTP API: cases and their actions, whistle, units, policy, meetings, KPIs.

Deny by default: every route on ``router`` needs a bearer token (a router dependency);
only the unit registry and the policy, on ``public_router``, are open.

Object-level access: a department (or platform) token acts as its ``unit`` and sees only
cases assigned to that unit; community staff (a staff token whose ``unit`` is a
``community:``) see only their community's cases. A case outside a caller's scope answers
404 to reads and actions alike, exactly like an unknown id, so ids cannot be probed
and the units it is assigned to are not disclosed; 403 is only for what a caller who may
see the case may not do (a role's limits, acting as another unit). Town/county staff (staff
without a community unit) and admins see every case; they act as their token's unit, or
on behalf of a unit named in the body (default: the accountable unit), and they alone
blow the whistle, reassign and record meeting decisions.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.routing.config import RoutingSettings
from services.routing.domain import lifecycle, meetings
from services.routing.domain.kpis import unit_stats
from services.routing.domain.lifecycle import Action, Case, Effects, NotAssigned, TransitionError
from services.routing.domain.policy import Policy
from services.routing.domain.units import UnitKind, UnitRegistry
from services.routing.service import CaseNotFound, Change, RoutingService
from services.routing.store import CaseStore
from tongxin.contracts.enums import Tier
from tongxin.runtime.auth import (
    STAFF_ROLES,
    UNIT_ROLES,
    CurrentPrincipal,
    Principal,
    Role,
    require_principal,
)
from tongxin.runtime.errors import ApiError
from tongxin.runtime.mongo import Doc
from tongxin.runtime.service import ServiceRuntime, WriteDeadline
from tongxin.runtime.uow import Effects as Writes

router = APIRouter(prefix="/v1", tags=["cases"], dependencies=[Depends(require_principal)])
# the only routes anyone may call without a token: reference data, no case data
public_router = APIRouter(prefix="/v1")


@dataclass
class RoutingContext:
    """What routing's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: RoutingSettings
    store: CaseStore
    policy: Policy
    units: UnitRegistry
    cases: RoutingService


def get_ctx(request: Request) -> RoutingContext:
    """FastAPI dependency: routing's context."""
    ctx: RoutingContext = request.app.state.rt.extra["ctx"]
    return ctx


CtxDep = Annotated[RoutingContext, Depends(get_ctx)]

CASE_READERS = STAFF_ROLES | UNIT_ROLES
UNIT_BOUND = UNIT_ROLES
COORDINATORS = STAFF_ROLES


def _community_staff(p: Principal) -> str | None:
    """The community a staff token is confined to (its ``community:`` unit), if any."""
    if p.role == Role.STAFF and p.unit and p.unit.startswith("community:"):
        return p.unit
    return None


def _reader(p: Principal) -> str | None:
    """The unit a reader is confined to (None: sees everything)."""
    if p.role not in CASE_READERS:
        raise ApiError(403, "forbidden", "This role may not read cases.")
    if p.role in UNIT_BOUND:
        if not p.unit:
            raise ApiError(403, "forbidden", "A department token must name its unit.")
        return p.unit
    return None


def _in_scope(p: Principal, doc: Doc) -> bool:
    """May ``p`` see this case at all (object-level check)?"""
    own = _reader(p)
    if own is not None and own not in doc.get("units", []):
        return False
    community = _community_staff(p)
    return community is None or doc.get("community") == community


def _coordinator(p: Principal) -> None:
    if p.role not in COORDINATORS or _community_staff(p) is not None:
        raise ApiError(403, "forbidden", "Only town or county staff may do this.")


def _view(doc: Doc, unit: str | None = None) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "seq")}
    out["id"] = doc["_id"]
    case = Case.from_doc(doc)
    out["allowed_actions"] = case.allowed_actions(unit)
    return out


def _encode_cursor(doc: Doc) -> str:
    at: datetime = doc["opened_at"]
    raw = f"{at.isoformat()}|{doc['_id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, cid = raw.partition("|")
        parsed = datetime.fromisoformat(at)
        if not cid or parsed.tzinfo is None:
            raise ValueError(cursor)
        return parsed, cid
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "bad_request", "Invalid cursor.", [{"loc": ["query", "cursor"]}]
        ) from exc


@router.get("/cases")
async def list_cases(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    response: Response,
    tier: Tier | None = None,
    status: lifecycle.Status | None = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    community: Annotated[str | None, Query(max_length=64)] = None,
    level: Annotated[str | None, Query(max_length=32)] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    """Cases visible to the caller, newest first; ``X-Next-Cursor`` pages on."""
    own = _reader(principal)
    filt: dict[str, Any] = {}
    if own:
        filt["units"] = own
    elif unit:
        filt["units"] = unit
    confined = _community_staff(principal)
    if confined:
        if community and community != confined:
            return []
        community = confined
    for key, value in (
        ("tier", tier.value if tier else None),
        ("status", status.value if status else None),
        ("request_id", request_id),
        ("community", community),
        ("level", level),
        ("overdue", overdue),
    ):
        if value is not None:
            filt[key] = value
    after = _decode_cursor(cursor) if cursor else None
    docs = await ctx.store.page(filt, limit, after)
    if len(docs) == limit:
        response.headers["X-Next-Cursor"] = _encode_cursor(docs[-1])
    return [_view(d, own) for d in docs]


async def _visible(ctx: RoutingContext, case_id: str, principal: Principal) -> Doc:
    """The case, or 404 when it does not exist *or* is outside the caller's scope."""
    doc = await ctx.store.get(case_id)
    if doc is None or not _in_scope(principal, doc):
        raise ApiError(404, "not_found", "No such case.")
    return doc


@router.get("/cases/{case_id}")
async def read_case(case_id: str, ctx: CtxDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """One case; a department gets 404 for a case not assigned to it."""
    own = _reader(principal)
    return _view(await _visible(ctx, case_id, principal), own)


class ActionBody(BaseModel):
    """An action's optional note; staff may act on behalf of an assigned unit."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)
    unit: str | None = Field(
        default=None, max_length=64, description="Staff only: the unit acted for."
    )


class ReturnBody(ActionBody):
    """A return (退单) needs its reason."""

    reason: str = Field(min_length=1, max_length=2000)


def _acting_unit(p: Principal, doc: Doc, body_unit: str | None) -> str:
    """The unit an action is taken as; 403 when the caller may not act on this case."""
    units: list[str] = doc.get("units", [])
    if p.role in UNIT_BOUND:
        if not p.unit:
            raise ApiError(403, "forbidden", "A department token must name its unit.")
        if body_unit and body_unit != p.unit:
            raise ApiError(403, "forbidden", "A department acts only as its own unit.")
        unit = p.unit
    elif p.role in COORDINATORS:
        unit = body_unit or p.unit or str(doc.get("accountable_unit") or units[0])
    else:
        raise ApiError(403, "forbidden", "This role may not act on cases.")
    if unit not in units:
        # no details: the assigned units of a case are not the caller's business
        raise ApiError(403, "forbidden", f"Unit {unit} is not assigned to this case.")
    return unit


def _errors(exc: Exception) -> ApiError:
    if isinstance(exc, TransitionError):
        return ApiError(
            409,
            "invalid_transition",
            f"{exc} (allowed now: {', '.join(exc.allowed) or 'none'})",
            {"status": exc.status, "allowed": exc.allowed},
        )
    if isinstance(exc, NotAssigned):
        return ApiError(403, "forbidden", str(exc))
    if isinstance(exc, CaseNotFound):
        return ApiError(404, "not_found", "No such case.")
    raise exc


async def _apply(
    ctx: RoutingContext,
    change: Change,
    own: str | None,
    deadline: float | None,
) -> dict[str, Any]:
    try:
        case = await ctx.cases.act(change, deadline)
    except (TransitionError, NotAssigned, CaseNotFound) as exc:
        raise _errors(exc) from exc
    return _view(case.to_doc(), own)


def _action_route(action: Action) -> None:
    body_model = ReturnBody if action == Action.RETURN else ActionBody

    async def act(
        case_id: str,
        ctx: CtxDep,
        principal: CurrentPrincipal,
        deadline: WriteDeadline,
        body: Any = None,
    ) -> dict[str, Any]:
        if action == Action.RETURN and body is None:
            raise ApiError(
                422,
                "validation_error",
                "A return needs a reason.",
                [{"loc": ["body", "reason"], "msg": "Field required", "type": "missing"}],
            )
        b = body or ActionBody()
        own = _reader(principal)
        # a case outside the caller's scope answers exactly like an unknown id (404)
        doc = await _visible(ctx, case_id, principal)
        unit = _acting_unit(principal, doc, b.unit)
        reason = getattr(b, "reason", None)
        policy = ctx.policy

        def op(case: Case, now: datetime) -> Effects:
            return lifecycle.act(
                case, action, unit, now, policy, by=principal.sub, note=b.note, reason=reason
            )

        return await _apply(ctx, Change(case_id, op), own or unit, deadline)

    # the body's model differs per action; FastAPI reads it from the annotations
    act.__annotations__["body"] = body_model | None
    act.__name__ = f"{action.value}_case"
    act.__doc__ = {
        Action.ACKNOWLEDGE: "Acknowledge (report in to) the case; emits case.acknowledged.",
        Action.PROGRESS: "Report progress; emits case.progressed.",
        Action.RESOLVE: "Resolve the case (feedback is asked for); emits case.resolved.",
        Action.RETURN: "Return the case (退单) to the town committee; emits case.returned.",
    }[action]
    router.post(f"/cases/{{case_id}}/{action.value}")(act)


for _action in Action:
    _action_route(_action)


class WhistleBody(BaseModel):
    """Departments to call onto the case (吹哨)."""

    model_config = ConfigDict(extra="forbid")

    units: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=11)
    reason: str | None = Field(default=None, max_length=2000)


def _check_units(ctx: RoutingContext, units: list[str], *, departments: bool) -> None:
    bad = [
        {"loc": ["body", "units", i], "msg": f"unknown unit {u}", "type": "unknown_unit"}
        for i, u in enumerate(units)
        if u not in ctx.units
    ]
    if departments:
        bad += [
            {
                "loc": ["body", "units", i],
                "msg": f"{u} is not an alliance department",
                "type": "not_a_department",
            }
            for i, u in enumerate(units)
            if u in ctx.units and not ctx.units.is_department(u)
        ]
    if bad:
        raise ApiError(422, "validation_error", "Unknown or unsuitable unit.", bad)


@router.post("/cases/{case_id}/whistle")
async def whistle(
    case_id: str,
    body: WhistleBody,
    ctx: CtxDep,
    principal: CurrentPrincipal,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """Blow the whistle: each department must report in before its own deadline (staff)."""
    _coordinator(principal)
    _check_units(ctx, body.units, departments=True)
    policy = ctx.policy

    def op(case: Case, now: datetime) -> Effects:
        return lifecycle.whistle(
            case, body.units, policy, now, by=principal.sub, reason=body.reason
        )

    return await _apply(ctx, Change(case_id, op), None, deadline)


class ReassignBody(BaseModel):
    """Dispatch the case to other units (the first becomes accountable)."""

    model_config = ConfigDict(extra="forbid")

    units: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=12)
    note: str | None = Field(default=None, max_length=2000)
    tier: Tier | None = None


@router.post("/cases/{case_id}/reassign")
async def reassign(
    case_id: str,
    body: ReassignBody,
    ctx: CtxDep,
    principal: CurrentPrincipal,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """The town committee reassigns a (returned) case; emits case.routed with a revision."""
    _coordinator(principal)
    _check_units(ctx, body.units, departments=False)
    policy = ctx.policy

    def op(case: Case, now: datetime) -> Effects:
        return lifecycle.reassign(
            case, body.units, policy, now, by=principal.sub, note=body.note, tier=body.tier
        )

    return await _apply(ctx, Change(case_id, op), None, deadline)


@public_router.get("/units", tags=["units"])
async def list_units(ctx: CtxDep, kind: UnitKind | None = None) -> list[dict[str, Any]]:
    """The unit registry: town committee, county, alliance departments, communities,
    their stations and owners' committees."""
    return [u.to_dict() for u in ctx.units.of_kind(*([kind] if kind else []))]


@public_router.get("/policy", tags=["policy"])
async def policy(ctx: CtxDep) -> dict[str, Any]:
    """The policy in force (durations already scaled by TONGXIN_DEADLINE_SCALE)."""
    out = ctx.policy.to_dict()
    out["source"] = str(ctx.settings.policy_path())
    return out


@router.get("/meetings/next", tags=["meetings"])
async def next_meeting(ctx: CtxDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """The next joint meeting and its agenda: deliberation items and escalated cases."""
    own = _reader(principal)
    mid, at = meetings.next_meeting(ctx.policy.meeting, datetime.now(UTC))
    cases = await ctx.store.agenda_candidates()
    if own:
        cases = [c for c in cases if own in c.units]
    confined = _community_staff(principal)
    if confined:
        cases = [c for c in cases if c.community == confined]
    minutes = await ctx.store.meeting(mid)
    return {
        "id": mid,
        "scheduled_at": at,
        "agenda": meetings.agenda(cases),
        "decisions": (minutes or {}).get("decisions", []),
    }


@router.get("/meetings/{meeting_id}", tags=["meetings"])
async def read_meeting(meeting_id: str, ctx: CtxDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """A meeting's recorded decisions (a department: only those dispatched to it)."""
    own = _reader(principal)
    if meetings.meeting_date(ctx.policy.meeting, meeting_id) is None:
        raise ApiError(404, "not_found", "No joint meeting sits on that date.")
    minutes = await ctx.store.meeting(meeting_id) or {}
    decisions = list(minutes.get("decisions", []))
    if own:
        decisions = [d for d in decisions if own in d.get("units", [])]
    return {"id": meeting_id, "decisions": decisions}


class DecisionBody(BaseModel):
    """A joint meeting's decision on one agenda item: dispatch the case."""

    model_config = ConfigDict(extra="forbid")

    case_id: str = Field(min_length=1, max_length=80)
    decision: str = Field(min_length=1, max_length=4000)
    units: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=12)
    tier: Tier | None = None


@router.post("/meetings/{meeting_id}/decisions", tags=["meetings"], status_code=201)
async def record_decision(
    meeting_id: str,
    body: DecisionBody,
    ctx: CtxDep,
    principal: CurrentPrincipal,
    deadline: WriteDeadline,
) -> dict[str, Any]:
    """Record a decision and dispatch the case to the decided unit(s) (case.routed revision)."""
    _coordinator(principal)
    day = meetings.meeting_date(ctx.policy.meeting, meeting_id)
    if day is None:
        raise ApiError(404, "not_found", "No joint meeting sits on that date.")
    next_id, next_at = meetings.next_meeting(ctx.policy.meeting, datetime.now(UTC))
    if meeting_id > next_id:
        raise ApiError(409, "meeting_not_due", f"The next meeting is {next_id}.")
    _check_units(ctx, body.units, departments=False)
    policy = ctx.policy
    now = datetime.now(UTC)
    decision: Doc = {
        "case_id": body.case_id,
        "decision": body.decision,
        "units": body.units,
        "tier": body.tier.value if body.tier else None,
        "by": principal.sub,
        "at": now,
    }

    def op(case: Case, at: datetime) -> Effects:
        if meetings.agenda_reason(case) is None:
            raise TransitionError(
                "the case is not on the joint meeting's agenda", [], case.status.value
            )
        fx = lifecycle.reassign(
            case,
            body.units,
            policy,
            at,
            by=principal.sub,
            note=body.decision,
            rule="meeting-decision",
            reason=f"联席会议 {meeting_id} 决定：{body.decision}",
            tier=body.tier,
        )
        case.meeting_decision = {"meeting_id": meeting_id, **decision}
        return fx

    def minutes(fx: Writes, _case: Case) -> None:
        ctx.store.record_decision(fx, meeting_id, next_at, decision)

    view = await _apply(ctx, Change(body.case_id, op, extra=minutes), None, deadline)
    return {"meeting_id": meeting_id, "decision": decision, "case": view}


@router.get("/stats/units", tags=["stats"])
async def stats_units(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    since: datetime | None = None,
    until: datetime | None = None,
    unit: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Response, resolution, satisfaction and whistle rates per unit and overall."""
    own = _reader(principal)
    now = datetime.now(UTC)
    since = _aware(since) if since else now - timedelta(days=ctx.settings.routing_kpi_window_days)
    until = _aware(until) if until else None
    if until is not None and until <= since:
        raise ApiError(
            422, "validation_error", "until must be after since.", [{"loc": ["query", "until"]}]
        )
    stats = unit_stats(await ctx.store.opened_between(since, until), now, since, until)
    only = own or unit
    units = stats["units"]
    if only:
        units = {only: units.get(only) or unit_stats([], now)["overall"]}
    for u, row in units.items():
        known = ctx.units.get(u)
        row["name"] = known.name if known else None
    return {"since": since, "until": until or now, "units": units, "overall": stats["overall"]}


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


class TierDay(BaseModel):
    """Cases opened on one local day, by tier."""

    day: date
    routine: int = 0
    general: int = 0
    major: int = 0
    special: int = 0
    total: int = 0


class DailyStats(BaseModel):
    """Cases opened per local day and tier over a window, every day listed (zeros too)."""

    since: datetime
    until: datetime
    utc_offset_minutes: int
    days: list[TierDay]


MAX_DAILY_WINDOW = timedelta(days=366)
DAILY_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


# error answers (401/403/422 in the SPEC shape) are documented by the kernel
@router.get("/stats/daily", tags=["stats"], response_model=DailyStats)
async def stats_daily(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    since: datetime | None = None,
    until: datetime | None = None,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    community: Annotated[str | None, Query(max_length=64)] = None,
) -> DailyStats:
    """Requests routed per day by tier (days in the policy's UTC offset), the caller's
    cases only: a department its unit's, community staff their community's."""
    own = _reader(principal)
    now = datetime.now(UTC)
    since = _aware(since) if since else now - timedelta(days=ctx.settings.routing_kpi_window_days)
    until = _aware(until) if until else now
    if until <= since or until - since > MAX_DAILY_WINDOW:
        raise ApiError(
            422,
            "validation_error",
            "until must be after since, at most 366 days later.",
            [{"loc": ["query", "until"]}],
        )
    if not DAILY_RANGE[0] <= since < until <= DAILY_RANGE[1]:
        # local days near the ends of the calendar would overflow
        raise ApiError(
            422,
            "validation_error",
            "since and until must lie between 1900 and 9000.",
            [{"loc": ["query", "since"]}],
        )
    only = own or unit
    confined = _community_staff(principal)
    # community staff asking for another community's cases count nothing
    foreign = bool(confined and community and community != confined)
    community = confined or community
    offset = ctx.policy.meeting.utc_offset_minutes
    tz = timezone(timedelta(minutes=offset))
    first, last = since.astimezone(tz).date(), until.astimezone(tz).date()
    span = range((last - first).days + 1)
    days = {first + timedelta(days=i): TierDay(day=first + timedelta(days=i)) for i in span}
    for case in [] if foreign else await ctx.store.opened_between(since, until):
        if (only and only not in case.units) or (community and case.community != community):
            continue
        row = days.get(case.opened_at.astimezone(tz).date())
        if row is not None:
            setattr(row, case.tier.value, getattr(row, case.tier.value) + 1)
            row.total += 1
    return DailyStats(since=since, until=until, utc_offset_minutes=offset, days=list(days.values()))
