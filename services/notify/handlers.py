"""What notify consumes: requests, cases and volunteer-task events.

Events only: the subscription hands a whole poll to ``NotifyService.on_events``.
"""

from __future__ import annotations

from services.notify.service import NotifyService
from tongxin.contracts.events import EVENT_MODELS
from tongxin.contracts.topics import CASES, REQUESTS, VOLUNTEER_TASKS
from tongxin.runtime.service import Subscription

CONSUMED = (REQUESTS, CASES, VOLUNTEER_TASKS)
TYPES = frozenset(
    ce
    for ce, model in EVENT_MODELS.items()
    if model.event_type in {t for topic in CONSUMED for t in topic.event_types}
)


def subscriptions(service: NotifyService) -> list[Subscription]:
    """Notify's consumer group ``events``: every consumed event may tell someone."""
    return [
        Subscription("events", [t.name for t in CONSUMED], handle=service.on_events, types=TYPES)
    ]
