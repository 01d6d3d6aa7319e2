"""Event models: the ``data`` of each CloudEvent on the topics (SPEC §3).

Events are named in the past tense, commands in the imperative; each carries its short
type (``case.routed``) and version. The CloudEvents ``type`` is
``tongxin.<type>.v<version>``. Consumers ignore unknown fields and unknown types.

One module per owning service (``requests``, ``cases``, ``tasks``, ``volunteers``,
``notifications``); this package re-exports them and keeps the registry.
"""

from __future__ import annotations

from typing import Any

from tongxin.contracts.events import cases, notifications, requests, tasks, volunteers
from tongxin.contracts.events.base import (
    CE_TYPE_PREFIX,
    UPCASTERS,
    Event,
    GeoPoint,
    Upcaster,
    parse_ce_type,
    upcast,
)
from tongxin.contracts.events.cases import *  # noqa: F403
from tongxin.contracts.events.notifications import *  # noqa: F403
from tongxin.contracts.events.requests import *  # noqa: F403
from tongxin.contracts.events.tasks import *  # noqa: F403
from tongxin.contracts.events.volunteers import *  # noqa: F403

_MODULES = (requests, cases, tasks, volunteers, notifications)

EVENT_MODELS: dict[str, type[Event]] = {
    m.ce_type(): m for module in _MODULES for m in module.MODELS
}

__all__ = [
    "CE_TYPE_PREFIX",
    "EVENT_MODELS",
    "UPCASTERS",
    "Event",
    "GeoPoint",
    "Upcaster",
    "event_model_for",
    "parse_ce_type",
    "parse_event",
    "upcast",
    *(m.__name__ for module in _MODULES for m in module.MODELS),
]


def event_model_for(ce_type: str) -> type[Event] | None:
    """The model for a CloudEvents type, or None for a type this code does not know."""
    return EVENT_MODELS.get(ce_type)


def parse_event(ce_type: str, data: dict[str, Any]) -> Event | None:
    """Parse ``data`` of ``ce_type`` into its model, upcasting old versions; None if unknown."""
    parsed = parse_ce_type(ce_type)
    if parsed is None:
        return None
    event_type, version = parsed
    version, data = upcast(event_type, version, data)
    model = event_model_for(f"{CE_TYPE_PREFIX}{event_type}.v{version}")
    return None if model is None else model.model_validate(data)
