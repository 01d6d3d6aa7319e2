"""Bearer JWT authentication (HS256 with the configured secret) and roles (SPEC §4)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

from tongxin.runtime.errors import ApiError


class Role(StrEnum):
    """Who a token speaks for."""

    STAFF = "staff"
    DEPARTMENT = "department"
    VOLUNTEER = "volunteer"
    ADMIN = "admin"
    PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    sub: str
    role: Role
    unit: str | None = None


def mint_token(
    secret: str, *, sub: str, role: Role, unit: str | None = None, ttl_s: int = 8 * 3600
) -> str:
    """A signed development/service token."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub, "role": role.value, "iat": now, "exp": now + ttl_s}
    if unit:
        claims["unit"] = unit
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_token(secret: str, token: str) -> Principal:
    """Verify a token; 401 for anything invalid or expired."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
        )
        role = Role(str(claims.get("role")))
    except (jwt.PyJWTError, ValueError) as exc:
        raise ApiError(401, "unauthorized", "Invalid or expired token.") from exc
    unit = claims.get("unit")
    return Principal(sub=str(claims["sub"]), role=role, unit=str(unit) if unit else None)


def principal_from_header(secret: str, authorization: str | None) -> Principal | None:
    """The principal of an ``Authorization: Bearer …`` header, None when absent."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "Use 'Authorization: Bearer <token>'.")
    return decode_token(secret, token.strip())
