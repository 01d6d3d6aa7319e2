"""What the accounts consume: the volunteer registry's events, so a registered volunteer
has an account and a deactivated one can no longer sign in.

Events only: the subscription hands a whole poll to its use case in ``service.py``; the
process that mounts the accounts (intake) adds it to its own subscriptions.
"""

from __future__ import annotations

from tongxin.accounts.service import AccountService
from tongxin.contracts.events import VolunteerDeactivated, VolunteerRegistered
from tongxin.contracts.topics import VOLUNTEER_REGISTRY
from tongxin.runtime.service import Subscription

REGISTRY_TYPES = frozenset(t.ce_type() for t in (VolunteerRegistered, VolunteerDeactivated))


def subscriptions(service: AccountService) -> list[Subscription]:
    """The accounts' consumer group: ``volunteer-accounts`` (registered, deactivated)."""
    return [
        Subscription(
            "volunteer-accounts",
            [VOLUNTEER_REGISTRY.name],
            handle=service.on_volunteers,
            types=REGISTRY_TYPES,
        )
    ]
