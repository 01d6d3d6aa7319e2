"""Events of ``tongxin.notifications.v1`` (owned by notify)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from tongxin.contracts.enums import NotifyChannel
from tongxin.contracts.events.base import Event


class NotificationSent(Event):
    """A message about an event reached a recipient over a channel (emitted by notify)."""

    event_type: ClassVar[str] = "notification.sent"

    notification_id: str
    source_event_id: str
    source_event_type: str
    recipient: str
    channel: NotifyChannel
    sent_at: datetime


class NotificationFailed(Event):
    """A message could not be delivered after the last attempt (emitted by notify)."""

    event_type: ClassVar[str] = "notification.failed"

    notification_id: str
    source_event_id: str
    source_event_type: str
    recipient: str
    channel: NotifyChannel
    error: str
    attempts: int
    failed_at: datetime


MODELS: tuple[type[Event], ...] = (NotificationSent, NotificationFailed)
