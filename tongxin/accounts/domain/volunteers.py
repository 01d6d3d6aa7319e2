"""How the accounts follow the volunteer registry (pure; no I/O).

A registered volunteer gets an account that answers as their volunteer id (its token's
``sub``), named after it (``vol:0007`` → ``vol-0007``), with no password anyone knows:
an admin hands one over with ``tongxin users reset-password`` (or the API's reset), which
the volunteer must change at the first sign-in. An account that already answers as that
volunteer is kept; a volunteer account of that name not yet bound to anyone is bound to
them. A deactivated volunteer's account is deactivated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tongxin.accounts.domain.accounts import NAME, Account

VOLUNTEER_ROLE = "volunteer"


class Step(StrEnum):
    """What one registry event does to the accounts."""

    CREATE = "create"  # a new account, with a password nobody knows
    LINK = "link"  # an unbound volunteer account of that name now answers as the volunteer
    DEACTIVATE = "deactivate"
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class Plan:
    """The step, the account name it concerns (None: no account can be named), and the
    audit outcome (None: nothing changed, nothing to record)."""

    step: Step
    name: str | None
    outcome: str | None


def login_name_for(volunteer_id: str) -> str | None:
    """The login name of a volunteer's account: the id lower-cased with ``:`` as ``-``
    (``vol:0007`` → ``vol-0007``); None when that is no valid login name."""
    name = volunteer_id.strip().lower().replace(":", "-")
    return name if NAME.match(name) else None


def on_registered(volunteer_id: str, bound: Account | None, named: Account | None) -> Plan:
    """A volunteer was registered. ``bound``: an account answering as ``volunteer_id``;
    ``named``: the account holding the name :func:`login_name_for` gives, if any."""
    if bound is not None:
        return Plan(Step.NOTHING, bound.name, None)  # created or linked before
    name = login_name_for(volunteer_id)
    if name is None:
        return Plan(Step.NOTHING, None, "invalid_name")
    if named is None:
        return Plan(Step.CREATE, name, "ok")
    if named.role == VOLUNTEER_ROLE and named.subject == named.name:
        return Plan(Step.LINK, name, "ok")  # created by an admin before the registration
    return Plan(Step.NOTHING, name, "name_taken")


def on_deactivated(bound: Account | None) -> Plan:
    """A volunteer was deactivated; ``bound`` is the account answering as them."""
    if bound is None:
        return Plan(Step.NOTHING, None, None)
    if not bound.active:
        return Plan(Step.NOTHING, bound.name, None)
    return Plan(Step.DEACTIVATE, bound.name, "ok")
