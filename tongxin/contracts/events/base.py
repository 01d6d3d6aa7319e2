"""Base of every event model, the CloudEvents type scheme, and the upcaster chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

CE_TYPE_PREFIX = "tongxin."


class Event(BaseModel):
    """Base of every published event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1

    request_id: str = Field(description="The request this event belongs to; the record key.")

    @classmethod
    def ce_type(cls) -> str:
        """The CloudEvents ``type`` attribute of this event."""
        return f"{CE_TYPE_PREFIX}{cls.event_type}.v{cls.version}"


class GeoPoint(BaseModel):
    """A WGS-84 point."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    lat: float
    lng: float


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (event type, from version) -> function turning that version's data into the next one.
# Old payloads are upgraded here, in one place, before a model parses them.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def parse_ce_type(ce_type: str) -> tuple[str, int] | None:
    """Split ``tongxin.case.routed.v1`` into ``("case.routed", 1)``; None if not ours."""
    if not ce_type.startswith(CE_TYPE_PREFIX):
        return None
    body, _, version = ce_type[len(CE_TYPE_PREFIX) :].rpartition(".v")
    if not body or not (version.isascii() and version.isdigit()):
        return None
    return body, int(version)


def upcast(
    event_type: str,
    version: int,
    data: dict[str, Any],
    upcasters: dict[tuple[str, int], Upcaster] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Apply the chain of upcasters from ``version`` as far as it goes."""
    table = UPCASTERS if upcasters is None else upcasters
    while (event_type, version) in table:
        data = table[(event_type, version)](data)
        version += 1
    return version, data
