"""What routing consumes: intake's requests and department systems' case commands.

Events only: each subscription hands a whole poll to its use case in ``service.py``.
"""

from __future__ import annotations

from services.routing.service import COMMAND_ACTIONS, RoutingService
from tongxin.contracts.events import RequestFeedbackGiven, RequestSubmitted, RequestWithdrawn
from tongxin.contracts.topics import INBOUND_CASE_COMMANDS, REQUESTS
from tongxin.runtime.service import Subscription

REQUEST_TYPES = frozenset(
    t.ce_type() for t in (RequestSubmitted, RequestFeedbackGiven, RequestWithdrawn)
)


def subscriptions(service: RoutingService) -> list[Subscription]:
    """Routing's consumer groups: ``requests`` (open, rate, withdraw) and ``commands``."""
    return [
        Subscription("requests", [REQUESTS.name], handle=service.on_requests, types=REQUEST_TYPES),
        Subscription(
            "commands",
            [INBOUND_CASE_COMMANDS.name],
            handle=service.on_commands,
            types=frozenset(COMMAND_ACTIONS),
        ),
    ]
