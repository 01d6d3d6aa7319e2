"""What an account is: its name, role, unit and flags (pure; no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

# a login name: lower-case letters, digits, dot, dash, underscore; starts with a letter
NAME = re.compile(r"^[a-z][a-z0-9._-]{1,39}$")
# a unit id as the seed files spell them: community:liyuan, town:yongbei, dept:civil-affairs
UNIT = re.compile(r"^[a-z]+:[a-z0-9][a-z0-9:_-]{0,79}$")
# who may hold an account — the values of tongxin.runtime.auth.Role for people; never
# ``platform``, whose tokens are minted for another system, not signed in with a password
# (a unit test holds the two together)
ACCOUNT_ROLES = frozenset({"staff", "department", "admin", "volunteer"})
# roles that act for a unit and need one
NEEDS_UNIT = frozenset({"department"})


class AccountInvalid(ValueError):
    """An account that cannot exist; the message is zh-CN, for people."""


@dataclass(frozen=True, slots=True)
class Account:
    """One account as stored (the password hash is kept apart and never leaves the store's
    callers in a response)."""

    name: str
    display_name: str
    role: str
    unit: str | None
    active: bool
    must_change_password: bool
    # the token's ``sub``: the name, or for a volunteer the volunteer id they answer as
    subject: str
    created_at: datetime
    updated_at: datetime
    # sessions carry the generation they were issued in; a password change, a reset or a
    # deactivation starts a new one, which ends every earlier session
    session_gen: int = 0


def session_stands(account: Account | None, token_gen: object) -> bool:
    """Whether a session of this account, issued in generation ``token_gen``, still counts."""
    return account is not None and account.active and token_gen == account.session_gen


def check_account(
    name: str,
    role: str,
    unit: str | None,
    known_units: frozenset[str] = frozenset(),
) -> None:
    """Raise :class:`AccountInvalid` for a name, role or unit an account cannot have.

    ``known_units`` (the unit ids of the seed files) is checked when given; else only
    the shape of the id."""
    if not NAME.match(name):
        raise AccountInvalid("用户名须以小写字母开头，由 2–40 个小写字母、数字或 . _ - 组成。")
    if role not in ACCOUNT_ROLES:
        raise AccountInvalid("该角色不能作为登录账号（platform 令牌只供系统对接使用）。")
    if unit is None:
        if role in NEEDS_UNIT:
            raise AccountInvalid("联盟部门账号必须指定所属单位（如 dept:civil-affairs）。")
        return
    if not UNIT.match(unit):
        raise AccountInvalid("单位编号格式不正确（如 community:liyuan、town:yongbei）。")
    if known_units and unit not in known_units:
        raise AccountInvalid(f"没有编号为 {unit} 的单位。")
