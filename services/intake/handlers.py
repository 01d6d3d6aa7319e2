"""What intake consumes: case and task events for the resident's timeline, and requests
other platforms publish on the inbound topic.

Events only: each subscription hands a whole poll to its use case in ``service.py``.
"""

from __future__ import annotations

from services.intake.service import IntakeService
from tongxin.contracts.events import EVENT_MODELS, RequestSubmitted
from tongxin.contracts.topics import CASES, INBOUND_REQUESTS, VOLUNTEER_TASKS
from tongxin.runtime.service import Subscription

TIMELINE_TYPES = frozenset(
    t for t in EVENT_MODELS if t.startswith(("tongxin.case.", "tongxin.task.", "tongxin.care."))
)


def subscriptions(service: IntakeService) -> list[Subscription]:
    """Intake's consumer groups: ``timeline`` and ``inbound``."""
    return [
        Subscription(
            "timeline",
            [CASES.name, VOLUNTEER_TASKS.name],
            handle=service.on_timeline,
            types=TIMELINE_TYPES,
            mark=False,  # an applied event's id is in the request's timeline
        ),
        Subscription(
            "inbound",
            [INBOUND_REQUESTS.name],
            handle=service.on_inbound,
            types=frozenset({RequestSubmitted.ce_type()}),
        ),
    ]
