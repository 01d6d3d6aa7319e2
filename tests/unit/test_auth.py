"""Bearer JWTs: minting, verifying, and reading the Authorization header."""

from __future__ import annotations

import time

import jwt
import pytest

from tongxin.runtime.auth import (
    Principal,
    Role,
    decode_token,
    mint_token,
    principal_from_header,
)
from tongxin.runtime.errors import ApiError

SECRET = "unit-test-secret-that-is-32-bytes-or-longer"
OTHER_SECRET = "another-secret-that-is-also-32-bytes-long!!"


def _signed(claims: dict[str, object], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _assert_401(exc_info: pytest.ExceptionInfo[ApiError]) -> None:
    assert exc_info.value.status == 401
    assert exc_info.value.code == "unauthorized"


# --- mint / decode ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_round_trip_for_every_role(role: Role) -> None:
    token = mint_token(SECRET, sub="user-1", role=role)

    assert decode_token(SECRET, token) == Principal(sub="user-1", role=role, unit=None)


def test_round_trip_keeps_the_unit() -> None:
    token = mint_token(SECRET, sub="张三", role=Role.DEPARTMENT, unit="街道城管科")

    principal = decode_token(SECRET, token)

    assert principal == Principal(sub="张三", role=Role.DEPARTMENT, unit="街道城管科")
    assert principal.role is Role.DEPARTMENT


def test_minted_claims_carry_role_value_and_expiry() -> None:
    before = int(time.time())

    token = mint_token(SECRET, sub="s", role=Role.STAFF, ttl_s=600)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["role"] == "staff"
    assert claims["sub"] == "s"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 600
    assert "unit" not in claims
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_wrong_secret_is_401() -> None:
    token = mint_token(OTHER_SECRET, sub="s", role=Role.ADMIN)

    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, token)

    _assert_401(exc_info)


def test_expired_token_is_401() -> None:
    token = mint_token(SECRET, sub="s", role=Role.STAFF, ttl_s=-10)

    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, token)

    _assert_401(exc_info)
    assert isinstance(exc_info.value.__cause__, jwt.ExpiredSignatureError)


def test_unknown_role_is_401() -> None:
    token = _signed({"sub": "s", "role": "superuser", "exp": int(time.time()) + 60})

    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, token)

    _assert_401(exc_info)


def test_missing_role_is_401() -> None:
    token = _signed({"sub": "s", "exp": int(time.time()) + 60})

    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, token)

    _assert_401(exc_info)


def test_missing_subject_is_401() -> None:
    token = _signed({"role": "staff", "exp": int(time.time()) + 60})

    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, token)

    _assert_401(exc_info)


def test_unsigned_token_is_401() -> None:
    token = jwt.encode({"sub": "s", "role": "admin"}, key=None, algorithm="none")

    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, token)

    _assert_401(exc_info)


def test_tampered_token_is_401() -> None:
    header, _payload, signature = mint_token(SECRET, sub="s", role=Role.STAFF).split(".")
    forged_payload = jwt.utils.base64url_encode(b'{"sub":"s","role":"admin","exp":9999999999}')
    forged = f"{header}.{forged_payload.decode()}.{signature}"

    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, forged)

    _assert_401(exc_info)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
def test_malformed_token_is_401(token: str) -> None:
    with pytest.raises(ApiError) as exc_info:
        decode_token(SECRET, token)

    _assert_401(exc_info)


# --- principal_from_header -------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_gives_no_principal(header: str | None) -> None:
    assert principal_from_header(SECRET, header) is None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_header_gives_the_principal(scheme: str) -> None:
    token = mint_token(SECRET, sub="v-1", role=Role.VOLUNTEER)

    principal = principal_from_header(SECRET, f"{scheme} {token}")

    assert principal == Principal(sub="v-1", role=Role.VOLUNTEER)


def test_extra_spaces_around_the_token_are_tolerated() -> None:
    token = mint_token(SECRET, sub="v-1", role=Role.VOLUNTEER)

    assert principal_from_header(SECRET, f"Bearer  {token} ") == Principal(
        sub="v-1", role=Role.VOLUNTEER
    )


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "abc.def.ghi"],
)
def test_malformed_header_is_401(header: str) -> None:
    with pytest.raises(ApiError) as exc_info:
        principal_from_header(SECRET, header)

    _assert_401(exc_info)
    assert "Bearer" in exc_info.value.message


def test_bearer_header_with_a_bad_token_is_401() -> None:
    token = mint_token(OTHER_SECRET, sub="s", role=Role.STAFF)

    with pytest.raises(ApiError) as exc_info:
        principal_from_header(SECRET, f"Bearer {token}")

    _assert_401(exc_info)
