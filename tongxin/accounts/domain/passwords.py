"""The password policy (pure): what a new password must be, with zh-CN reasons."""

from __future__ import annotations

MIN_LENGTH = 10
MAX_LENGTH = 128  # Argon2 takes any length; this bounds the work a request can ask for

# the commonest choices of leaked-password lists that pass the length rule, and the
# platform's own words; compared case-insensitively
COMMON = frozenset(
    {
        "1234567890",
        "0123456789",
        "1234567890a",
        "a123456789",
        "qwertyuiop",
        "qwerty1234",
        "qwerty12345",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "password1",
        "password12",
        "password123",
        "password1234",
        "passw0rd123",
        "iloveyou123",
        "abcdefghij",
        "abcd123456",
        "abc1234567",
        "aaaaaaaaaa",
        "admin12345",
        "admin123456",
        "administrator",
        "woaini1314",
        "woaini520",
        "5201314520",
        "changeme123",
        "welcome123",
        "letmein123",
        "tongxin123",
        "tongxin1234",
        "tongxin12345",
    }
)


class PasswordRejected(ValueError):
    """A password the policy refuses; the message says why, in zh-CN."""


def check_password(password: str, name: str) -> None:
    """Raise :class:`PasswordRejected` when ``password`` may not be used by ``name``."""
    if len(password) < MIN_LENGTH:
        raise PasswordRejected(f"密码至少需要 {MIN_LENGTH} 个字符。")
    if len(password) > MAX_LENGTH:
        raise PasswordRejected(f"密码不能超过 {MAX_LENGTH} 个字符。")
    if password.isdigit():
        raise PasswordRejected("密码不能全部是数字，请加入字母或符号。")
    lowered = password.lower()
    if name and name.lower() in lowered:
        raise PasswordRejected("密码不能包含用户名。")
    if lowered in COMMON or len(set(password)) <= 2:
        raise PasswordRejected("密码过于常见，容易被猜中，请换一个。")
