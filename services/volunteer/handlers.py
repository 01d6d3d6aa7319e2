"""What volunteer consumes: routing's case events.

Events only: the subscription hands a whole poll to its use case in ``service.py`` — a
routed case that needs volunteers opens a task, a resolved or closed one stops its walk.
"""

from __future__ import annotations

from services.volunteer.service import VolunteerService
from tongxin.contracts.events import CaseClosed, CaseResolved, CaseRouted
from tongxin.contracts.topics import CASES
from tongxin.runtime.service import Subscription

CASE_TYPES = frozenset(t.ce_type() for t in (CaseRouted, CaseResolved, CaseClosed))


def subscriptions(service: VolunteerService) -> list[Subscription]:
    """Volunteer's consumer group: ``cases`` (routed, resolved, closed)."""
    return [Subscription("cases", [CASES.name], handle=service.on_cases, types=CASE_TYPES)]
