"""How the accounts follow the volunteer registry (pure rules, no I/O): the login name a
volunteer id gives, and what a registration or a deactivation does to the accounts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tongxin.accounts.domain.accounts import Account, check_account
from tongxin.accounts.domain.volunteers import (
    VOLUNTEER_ROLE,
    Plan,
    Step,
    login_name_for,
    on_deactivated,
    on_registered,
)

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def account(name: str, *, subject: str | None = None, role: str = VOLUNTEER_ROLE) -> Account:
    return Account(
        name=name,
        display_name="赵红梅",
        role=role,
        unit=None,
        active=True,
        must_change_password=False,
        subject=subject or name,
        created_at=T0,
        updated_at=T0,
    )


@pytest.mark.parametrize(
    ("vid", "name"),
    [
        ("vol:0007", "vol-0007"),
        ("v:a", "v-a"),
        ("vol:Li.Hong_2", "vol-li.hong_2"),
        (" vol:0008 ", "vol-0008"),
        ("vol:" + "x" * 36, "vol-" + "x" * 36),  # 40 characters: the longest name
        ("vol:" + "x" * 37, None),  # 41: too long for a login name
        ("9:abc", None),  # a name starts with a letter
        ("vol:王芳", None),
        ("", None),
    ],
)
def test_the_login_name_of_a_volunteer_id(vid: str, name: str | None) -> None:
    assert login_name_for(vid) == name
    if name is not None:  # every name it gives is one an account may have
        check_account(name, VOLUNTEER_ROLE, None)


def test_a_new_volunteer_gets_an_account() -> None:
    assert on_registered("vol:0007", None, None) == Plan(Step.CREATE, "vol-0007", "ok")


def test_an_account_bound_to_the_volunteer_is_kept_as_it_is() -> None:
    """A registration seen again (or an account an admin made for them) changes nothing
    and records nothing."""
    bound = account("zhao-hongmei", subject="vol:0007")
    assert on_registered("vol:0007", bound, None) == Plan(Step.NOTHING, "zhao-hongmei", None)
    named = account("vol-0007", subject="vol:0007")
    assert on_registered("vol:0007", named, named) == Plan(Step.NOTHING, "vol-0007", None)


def test_an_unbound_volunteer_account_of_that_name_is_bound() -> None:
    unbound = account("vol-0007")
    assert on_registered("vol:0007", None, unbound) == Plan(Step.LINK, "vol-0007", "ok")


@pytest.mark.parametrize(
    "holder",
    [
        account("vol-0007", role="staff"),  # a staff member's name: never taken over
        account("vol-0007", subject="vol:0099"),  # another volunteer's account
    ],
)
def test_a_name_held_by_someone_else_is_left_alone_and_recorded(holder: Account) -> None:
    assert on_registered("vol:0007", None, holder) == Plan(Step.NOTHING, "vol-0007", "name_taken")


def test_an_id_that_makes_no_login_name_is_recorded() -> None:
    assert on_registered("vol:王芳", None, None) == Plan(Step.NOTHING, None, "invalid_name")


def test_deactivation_disables_an_active_account_once() -> None:
    bound = account("vol-0007", subject="vol:0007")
    assert on_deactivated(bound) == Plan(Step.DEACTIVATE, "vol-0007", "ok")
    off = replace(bound, active=False)
    assert on_deactivated(off) == Plan(Step.NOTHING, "vol-0007", None)
    assert on_deactivated(None) == Plan(Step.NOTHING, None, None)
