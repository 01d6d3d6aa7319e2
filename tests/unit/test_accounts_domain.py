"""The accounts' pure rules: the password policy, account shapes, lockout arithmetic."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tongxin.accounts.domain.accounts import (
    ACCOUNT_ROLES,
    Account,
    AccountInvalid,
    check_account,
    session_stands,
)
from tongxin.accounts.domain.passwords import PasswordRejected, check_password
from tongxin.accounts.domain.throttle import Counter, Limit, record_failure, retry_after
from tongxin.runtime.auth import Role

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
LIMIT = Limit(5, timedelta(minutes=15), timedelta(minutes=15))


def test_account_roles_are_the_people_roles() -> None:
    assert {r.value for r in Role} - {Role.PLATFORM.value} == ACCOUNT_ROLES


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short-1", "至少"),
        ("x" * 129, "不能超过"),
        ("12345678901", "数字"),
        ("my-wangfang-pw", "用户名"),
        ("MY-WANGFANG-PW", "用户名"),
        ("Password123", "常见"),
        ("abababababab", "常见"),
    ],
)
def test_the_policy_refuses_with_a_reason(password: str, why: str) -> None:
    with pytest.raises(PasswordRejected, match=why):
        check_password(password, "wangfang")


@pytest.mark.parametrize("password", ["lantern-7-river", "梨园社区办公室2026", "a1b2c3d4e5"])
def test_the_policy_accepts_good_passwords(password: str) -> None:
    check_password(password, "wangfang")


@pytest.mark.parametrize(
    ("name", "role", "unit", "why"),
    [
        ("W", "staff", None, "用户名"),
        ("9abc", "staff", None, "用户名"),
        ("ok-name", "platform", None, "platform"),
        ("ok-name", "department", None, "单位"),
        ("ok-name", "staff", "Community Liyuan", "格式"),
        ("ok-name", "staff", "community:nowhere", "没有编号"),
    ],
)
def test_account_shapes(name: str, role: str, unit: str | None, why: str) -> None:
    with pytest.raises(AccountInvalid, match=why):
        check_account(name, role, unit, frozenset({"community:liyuan"}))


def test_a_good_account_passes() -> None:
    check_account("li.wang", "department", "dept:civil-affairs")  # no known units: shape only
    check_account("li.wang", "staff", None)


def test_five_failures_in_the_window_lock_for_the_lockout() -> None:
    c = Counter()
    for i in range(4):
        c = record_failure(c, T0 + timedelta(minutes=i), LIMIT)
        assert retry_after(c, T0 + timedelta(minutes=i)) is None
    c = record_failure(c, T0 + timedelta(minutes=4), LIMIT)
    assert retry_after(c, T0 + timedelta(minutes=4)) == 15 * 60
    assert retry_after(c, T0 + timedelta(minutes=18, seconds=59.5)) == 1
    assert retry_after(c, T0 + timedelta(minutes=19)) is None
    # attempts while locked do not extend the lock
    assert record_failure(c, T0 + timedelta(minutes=10), LIMIT) == c
    # after the lock, counting starts again
    after = record_failure(c, T0 + timedelta(minutes=20), LIMIT)
    assert after.failures == 1 and after.locked_until is None


def test_failures_spread_beyond_the_window_never_lock() -> None:
    c = Counter()
    for i in range(20):
        c = record_failure(c, T0 + timedelta(minutes=4 * i), LIMIT)
        assert c.locked_until is None


def test_a_session_stands_only_in_its_accounts_generation() -> None:
    account = Account("li.wang", "李", "staff", None, True, False, "li.wang", T0, T0, session_gen=3)
    assert session_stands(account, 3)
    assert not session_stands(account, 2)  # a password change or reset came after it
    assert not session_stands(account, None)  # not a sign-in session at all
    assert not session_stands(replace(account, active=False), 3)
    assert not session_stands(None, 3)
