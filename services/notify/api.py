"""Notify's HTTP API: what was sent to whom, and the channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from services.notify.config import NotifySettings
from services.notify.store import NotifyStore
from tongxin.contracts.enums import NotifyChannel
from tongxin.runtime.auth import Role
from tongxin.runtime.errors import ApiError
from tongxin.runtime.service import CurrentPrincipal, ServiceRuntime

router = APIRouter(prefix="/v1", tags=["notifications"])


@dataclass
class NotifyContext:
    """What notify's routes and handlers share, built in the lifespan."""

    rt: ServiceRuntime
    settings: NotifySettings
    store: NotifyStore


def get_ctx(request: Request) -> NotifyContext:
    """FastAPI dependency: notify's context."""
    ctx: NotifyContext = request.app.state.rt.extra["ctx"]
    return ctx


CtxDep = Annotated[NotifyContext, Depends(get_ctx)]


@router.get("/notifications")
async def list_notifications(
    ctx: CtxDep,
    principal: CurrentPrincipal,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    recipient: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Deliveries by request or recipient (staff)."""
    if principal.role not in (Role.STAFF, Role.ADMIN):
        raise ApiError(403, "forbidden", "Only staff read notifications.")
    filt: dict[str, Any] = {}
    if request_id:
        filt["request_id"] = request_id
    if recipient:
        filt["recipient"] = recipient
    docs = await ctx.store.list(filt, limit)
    return [{**{k: v for k, v in d.items() if k != "_id"}, "id": d["_id"]} for d in docs]


@router.get("/channels")
async def channels(ctx: CtxDep) -> list[dict[str, Any]]:
    """Channels and whether they are configured."""
    return [
        {"channel": NotifyChannel.WEBHOOK.value, "enabled": bool(ctx.settings.notify_webhook_url)},
        {"channel": NotifyChannel.CONSOLE.value, "enabled": True},
    ]
