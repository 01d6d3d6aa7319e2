"""The recipient directory: units, liaisons, the town committee, staff and volunteers.

Loaded from a notify-owned config file (``deploy/notify/directory.yaml``); submitters are
not in it — their contact comes from ``request.submitted`` and only notify keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.notify.domain.quiet import QuietHours
from tongxin.contracts.enums import NotifyChannel


class RecipientKind(StrEnum):
    """Who a recipient is; units, liaisons and staff are 'staff' audiences."""

    UNIT = "unit"
    LIAISON = "liaison"
    STAFF = "staff"
    VOLUNTEER = "volunteer"
    SUBMITTER = "submitter"


STAFF_KINDS = frozenset({RecipientKind.UNIT, RecipientKind.LIAISON, RecipientKind.STAFF})

# the address field each channel needs (webhook falls back to the default URL)
ADDRESS_OF: dict[NotifyChannel, str] = {
    NotifyChannel.WEBHOOK: "webhook",
    NotifyChannel.WECOM: "wecom_key",
    NotifyChannel.DINGTALK: "dingtalk_token",
    NotifyChannel.EMAIL: "email",
    NotifyChannel.SMS: "phone",
}
ADDRESS_FIELDS = ("webhook", "wecom_key", "dingtalk_token", "dingtalk_secret", "email", "phone")


@dataclass(frozen=True, slots=True)
class Recipient:
    """Someone notify can reach, with default channels and addresses per channel."""

    id: str
    name: str
    kind: RecipientKind
    channels: tuple[NotifyChannel, ...]
    addresses: Mapping[str, str] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    liaison: str | None = None
    social_work: str | None = None

    def can_use(self, channel: NotifyChannel, *, default_webhook: bool) -> bool:
        """Whether this recipient has an address for ``channel``."""
        if channel is NotifyChannel.CONSOLE:
            return True
        if channel is NotifyChannel.WEBHOOK and default_webhook:
            return True
        return bool(self.addresses.get(ADDRESS_OF[channel]))


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str

    def parse(self) -> QuietHours:
        return QuietHours.parse(self.start, self.end)

    @model_validator(mode="after")
    def _valid(self) -> _Window:
        self.parse()
        return self


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: list[NotifyChannel] = Field(default_factory=lambda: [NotifyChannel.CONSOLE])
    quiet_hours: _Window | None = None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=3, pattern=r"^[a-z_]+:.+$")
    name: str = Field(min_length=1)
    kind: RecipientKind
    channels: list[NotifyChannel] | None = None
    quiet_hours: _Window | None = None
    liaison: str | None = None
    social_work: str | None = None
    webhook: str | None = None
    wecom_key: str | None = None
    dingtalk_token: str | None = None
    dingtalk_secret: str | None = None
    email: str | None = None
    phone: str | None = None


class DirectoryFile(BaseModel):
    """The shape of ``directory.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    town: str
    county: str
    staff: list[str] = Field(default_factory=list)
    defaults: dict[RecipientKind, _Defaults] = Field(default_factory=dict)
    recipients: list[_Entry]

    @field_validator("recipients")
    @classmethod
    def _unique_ids(cls, v: list[_Entry]) -> list[_Entry]:
        seen: set[str] = set()
        for e in v:
            if e.id in seen:
                raise ValueError(f"recipient {e.id!r} is listed twice")
            seen.add(e.id)
        return v

    @model_validator(mode="after")
    def _references_exist(self) -> DirectoryFile:
        ids = {e.id for e in self.recipients}
        refs = [self.town, *self.staff]
        refs += [e.liaison for e in self.recipients if e.liaison]
        refs += [e.social_work for e in self.recipients if e.social_work]
        missing = sorted({r for r in refs if r not in ids})
        if missing:
            raise ValueError(f"directory references unknown recipients: {missing}")
        return self


class Directory:
    """Lookups over the recipient directory (pure, built once at start)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        parsed = DirectoryFile.model_validate(doc)
        self.town = parsed.town
        self.county = parsed.county
        self.staff = tuple(parsed.staff)
        self._defaults = {k: _resolve_defaults(d) for k, d in parsed.defaults.items()}
        self._by_id: dict[str, Recipient] = {}
        for e in parsed.recipients:
            d_channels, d_quiet = self.defaults(e.kind)
            addresses = {f: getattr(e, f) for f in ADDRESS_FIELDS if getattr(e, f)}
            self._by_id[e.id] = Recipient(
                id=e.id,
                name=e.name,
                kind=e.kind,
                channels=tuple(e.channels) if e.channels else d_channels,
                addresses=addresses,
                quiet_hours=e.quiet_hours.parse() if e.quiet_hours else d_quiet,
                liaison=e.liaison,
                social_work=e.social_work,
            )

    def defaults(self, kind: RecipientKind) -> tuple[tuple[NotifyChannel, ...], QuietHours | None]:
        """Default channels and quiet hours for recipients of ``kind``."""
        return self._defaults.get(kind, ((NotifyChannel.CONSOLE,), None))

    def get(self, recipient_id: str) -> Recipient | None:
        """A directory recipient by id."""
        return self._by_id.get(recipient_id)

    def __contains__(self, recipient_id: object) -> bool:
        return recipient_id in self._by_id

    def ids(self) -> list[str]:
        """Every recipient id in the directory."""
        return list(self._by_id)

    def name_of(self, recipient_id: str) -> str:
        """A display name for a unit or recipient id (the id itself when unknown)."""
        r = self._by_id.get(recipient_id)
        return r.name if r else recipient_id

    def unknown(self, recipient_id: str, kind: RecipientKind, name: str | None = None) -> Recipient:
        """A recipient not in the directory (a volunteer or unit added later): defaults only."""
        channels, quiet = self.defaults(kind)
        return Recipient(recipient_id, name or recipient_id, kind, channels, {}, quiet)


def _resolve_defaults(d: _Defaults) -> tuple[tuple[NotifyChannel, ...], QuietHours | None]:
    return tuple(d.channels), d.quiet_hours.parse() if d.quiet_hours else None
