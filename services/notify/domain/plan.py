"""Planning: an event becomes deliveries — recipient × channel, rendered, maybe deferred."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notify.domain.directory import Directory, Recipient, RecipientKind
from services.notify.domain.quiet import QuietHours
from services.notify.domain.rules import Facts, RuleSet, audience
from services.notify.domain.templates import Message, Templates
from tongxin.contracts.enums import NotifyChannel


@dataclass(frozen=True, slots=True)
class Preference:
    """A recipient's own choice: channels in order, and quiet hours (None: never quiet)."""

    channels: tuple[NotifyChannel, ...]
    quiet_hours: QuietHours | None


@dataclass(frozen=True, slots=True)
class SavedPreference:
    """A recipient's preference as stored, with who set it and when."""

    recipient: str
    preference: Preference
    updated_by: str | None = None
    updated_at: datetime | None = None

    def to_doc(self) -> dict[str, Any]:
        """The stored document."""
        quiet = self.preference.quiet_hours
        return {
            "_id": self.recipient,
            "channels": [c.value for c in self.preference.channels],
            "quiet_hours": quiet.as_dict() if quiet else None,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> SavedPreference:
        """A stored document back."""
        quiet = doc.get("quiet_hours")
        return cls(
            recipient=str(doc["_id"]),
            preference=Preference(
                channels=tuple(NotifyChannel(c) for c in doc.get("channels", [])),
                quiet_hours=QuietHours.parse(quiet["start"], quiet["end"]) if quiet else None,
            ),
            updated_by=doc.get("updated_by"),
            updated_at=doc.get("updated_at"),
        )


@dataclass(frozen=True, slots=True)
class Planned:
    """One delivery to make: to whom, over what, the message, and not before when."""

    recipient: Recipient
    channel: NotifyChannel
    template: str
    critical: bool
    message: Message
    not_before: datetime | None = None
    fallback: bool = False


@dataclass(frozen=True, slots=True)
class Planner:
    """Rules + directory + templates; pure, built once at start."""

    rules: RuleSet
    directory: Directory
    templates: Templates
    enabled: frozenset[NotifyChannel]
    default_webhook: bool = False
    console_fallback: bool = True

    def recipient(self, rid: str, facts: Facts) -> Recipient:
        """The directory entry, the kept submitter contact, or defaults for an unknown id."""
        known = self.directory.get(rid)
        if known is not None:
            return known
        if rid.startswith("submitter:"):
            contact = facts.contact or {}
            channels, quiet = self.directory.defaults(RecipientKind.SUBMITTER)
            phone = contact.get("phone")
            return Recipient(
                rid,
                str(contact.get("name") or "居民"),
                RecipientKind.SUBMITTER,
                channels,
                {"phone": str(phone)} if phone else {},
                quiet,
            )
        if rid.startswith("volunteer:"):
            name = facts.data.get("volunteer_name")
            return self.directory.unknown(rid, RecipientKind.VOLUNTEER, str(name) if name else None)
        return self.directory.unknown(rid, RecipientKind.UNIT)

    def channels_for(
        self, r: Recipient, template: str, pref: Preference | None
    ) -> tuple[list[NotifyChannel], bool]:
        """The channels to use for a recipient, and whether that is the console fallback."""
        wanted = pref.channels if pref is not None else r.channels
        usable = [
            c
            for c in dict.fromkeys(wanted)
            if c in self.enabled
            and r.can_use(c, default_webhook=self.default_webhook)
            and self.templates.supports(template, c)
        ]
        if usable:
            return usable, False
        if self.console_fallback and NotifyChannel.CONSOLE in self.enabled:
            return [NotifyChannel.CONSOLE], True
        return [], False

    def recipient_ids(self, facts: Facts) -> list[str]:
        """Everyone some rule names for an event (to look their preferences up)."""
        seen: dict[str, None] = {}
        for rule in self.rules.matching(facts.event_type, facts.data):
            for rid in audience(rule, facts, self.directory):
                seen.setdefault(rid, None)
        return list(seen)

    def plan(
        self,
        facts: Facts,
        prefs: Mapping[str, Preference],
        now: datetime,
        *,
        emergency: bool = False,
    ) -> list[Planned]:
        """Every delivery an event calls for (at most one per recipient and channel)."""
        out: list[Planned] = []
        seen: set[tuple[str, NotifyChannel]] = set()
        for rule in self.rules.matching(facts.event_type, facts.data):
            critical = rule.critical or emergency
            for rid in audience(rule, facts, self.directory):
                r = self.recipient(rid, facts)
                pref = prefs.get(rid)
                channels, fallback = self.channels_for(r, rule.template, pref)
                quiet = pref.quiet_hours if pref is not None else r.quiet_hours
                not_before = None if critical or quiet is None else quiet.ends_after(now)
                variables = self.variables(facts, r)
                for ch in channels:
                    if (rid, ch) in seen:
                        continue
                    seen.add((rid, ch))
                    msg = self.templates.render(rule.template, ch, variables)
                    out.append(Planned(r, ch, rule.template, critical, msg, not_before, fallback))
        return out

    def variables(self, facts: Facts, r: Recipient) -> dict[str, Any]:
        """What a template can use: the event's fields plus context."""
        contact = facts.contact or {}
        return {
            **facts.data,
            "event_type": facts.event_type,
            # "to_*": event fields may use recipient_* (care.visit_overdue's recipient_id)
            "to_id": r.id,
            "to_name": r.name,
            "to_kind": r.kind.value,
            "case": dict(facts.case or {}),
            "submitter_name": str(contact.get("name") or "居民"),
        }
