"""Notify's HTTP API: what was sent to whom, recipients' preferences, and the channels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.notify.channels import ChannelHealth
from services.notify.config import NotifySettings
from services.notify.domain.delivery import Delivery, DeliveryQuery, Status
from services.notify.domain.plan import Preference
from services.notify.domain.quiet import QuietHours
from services.notify.service import (
    NoAddress,
    NotifyService,
    PreferenceChange,
    UnknownRecipient,
)
from tongxin.contracts.enums import NotifyChannel
from tongxin.runtime.auth import STAFF_ROLES, CurrentPrincipal, Principal, Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.service import ServiceRuntime, WriteDeadline

router = APIRouter(prefix="/v1", tags=["notifications"])

STATUSES = tuple(s.value for s in Status)


@dataclass
class NotifyContext:
    """What notify's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: NotifySettings
    service: NotifyService
    health: dict[NotifyChannel, ChannelHealth]


def get_ctx(request: Request) -> NotifyContext:
    """FastAPI dependency: notify's context."""
    ctx: NotifyContext = request.app.state.rt.extra["ctx"]
    return ctx


CtxDep = Annotated[NotifyContext, Depends(get_ctx)]
RecipientPath = Annotated[str, Path(min_length=3, max_length=128, pattern=r"^[a-z_]+:[^/\s]+$")]


def _own_recipients(p: Principal) -> list[str] | None:
    """Recipients a caller may see; None means all (staff, admin)."""
    if p.role in STAFF_ROLES:
        return None
    if p.role is Role.DEPARTMENT and p.unit:
        return [p.unit, f"liaison:{p.unit}"]
    if p.role is Role.VOLUNTEER:
        return [f"volunteer:{p.sub}"]
    raise ApiError(403, "forbidden", "This role does not read notifications.")


def _view(d: Delivery, now: datetime) -> dict[str, Any]:
    status = d.status.value
    if d.status is Status.SENDING and d.lease_until is not None and d.lease_until < now:
        # the process died mid-attempt: it is never sent again (at most once)
        status = "unknown"
    return {
        "id": d.id,
        "notification_id": d.notification_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "request_id": d.request_id,
        "case_id": d.case_id,
        "recipient": d.recipient,
        "recipient_name": d.recipient_name,
        "channel": d.channel.value,
        "status": status,
        "attempts": d.attempts,
        "critical": d.critical,
        "title": d.message.title,
        "text": d.message.text,
        "not_before": d.not_before,
        "created_at": d.created_at,
        "sent_at": d.sent_at,
        "failed_at": d.failed_at,
        "last_error": d.last_error,
    }


@router.get("/notifications")
async def list_notifications(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    recipient: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")] = None,
    channel: NotifyChannel | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Deliveries by request or recipient, with status and attempts (staff see all; a
    department its unit and liaison; a volunteer their own)."""
    own = _own_recipients(principal)
    recipients: list[str] | None = own
    if recipient:
        if own is not None and recipient not in own:
            raise ApiError(403, "forbidden", "You may read only your own notifications.")
        recipients = [recipient]
    query = DeliveryQuery(
        request_id=request_id or None,
        recipients=recipients,
        status=status or None,
        channel=channel.value if channel else None,
    )
    now = datetime.now(UTC)
    return [_view(d, now) for d in await ctx.service.deliveries(query, limit)]


class QuietWindow(BaseModel):
    """A daily window in Asia/Shanghai, ``HH:MM`` or ``HH:MM:SS``; it may wrap midnight."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(examples=["22:00"])
    end: str = Field(examples=["07:00"])

    @model_validator(mode="after")
    def _valid(self) -> QuietWindow:
        QuietHours.parse(self.start, self.end)  # ValueError → 422
        return self


class PreferenceUpdate(BaseModel):
    """A recipient's channels (in order of preference) and quiet hours (null: none)."""

    model_config = ConfigDict(extra="forbid")

    channels: list[NotifyChannel] = Field(min_length=1, max_length=len(NotifyChannel))
    quiet_hours: QuietWindow | None = None

    @field_validator("channels")
    @classmethod
    def _distinct(cls, v: list[NotifyChannel]) -> list[NotifyChannel]:
        if len(set(v)) != len(v):
            raise ValueError("channels must not repeat")
        return v


class PreferenceRead(BaseModel):
    """The preference in effect and where it comes from (preference, directory, defaults)."""

    recipient: str
    channels: list[NotifyChannel]
    quiet_hours: QuietWindow | None
    timezone: str = "Asia/Shanghai"
    source: str
    updated_at: datetime | None = None


def _may_manage(p: Principal, recipient: str) -> bool:
    own = _own_recipients(p)
    return own is None or recipient in own


@router.get("/preferences/{recipient}", response_model=PreferenceRead)
async def get_preference(
    ctx: CtxDep, principal: CurrentPrincipal, recipient: RecipientPath
) -> PreferenceRead:
    """The channels and quiet hours in effect for a recipient."""
    if not _may_manage(principal, recipient):
        raise ApiError(403, "forbidden", "You may read only your own preferences.")
    try:
        p = await ctx.service.preference(recipient)
    except UnknownRecipient as exc:
        raise ApiError(404, "not_found", f"No recipient {recipient!r}.") from exc
    quiet: Any = p.quiet_hours.as_dict() if p.quiet_hours else None
    return PreferenceRead(
        recipient=recipient,
        channels=list(p.channels),
        quiet_hours=quiet,
        source=p.source,
        updated_at=p.updated_at,
    )


@router.put("/preferences/{recipient}", response_model=PreferenceRead)
async def put_preference(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    recipient: RecipientPath,
    body: PreferenceUpdate,
    deadline: WriteDeadline,
) -> PreferenceRead:
    """Set a recipient's channels and quiet hours (staff; a department its unit and
    liaison; a volunteer their own). Critical messages ignore quiet hours."""
    if not _may_manage(principal, recipient):
        raise ApiError(403, "forbidden", "You may change only your own preferences.")
    quiet = body.quiet_hours
    change = PreferenceChange(
        recipient,
        Preference(
            channels=tuple(body.channels),
            quiet_hours=QuietHours.parse(quiet.start, quiet.end) if quiet else None,
        ),
        by=principal.sub,
    )
    try:
        saved = await ctx.service.set_preference(change, deadline)
    except UnknownRecipient as exc:
        raise ApiError(404, "not_found", f"No recipient {recipient!r}.") from exc
    except NoAddress as exc:
        raise ApiError(
            422,
            "no_address",
            "The recipient has no address for some channels.",
            [
                {
                    "loc": ["body", "channels"],
                    "msg": f"no address for {c.value}",
                    "type": "no_address",
                }
                for c in exc.channels
            ],
        ) from exc
    return PreferenceRead(
        recipient=recipient,
        channels=body.channels,
        quiet_hours=body.quiet_hours,
        source="preference",
        updated_at=saved.updated_at,
    )


@router.get("/channels")
async def channels(ctx: CtxDep) -> list[dict[str, Any]]:
    """Every channel: configured or not, and its health from recent attempts."""
    return [ctx.health[c].as_dict() for c in NotifyChannel]
