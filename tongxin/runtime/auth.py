"""Bearer JWT authentication and roles (SPEC §4).

HS256 with the configured secret is the default (``tongxin token`` mints development
tokens with it). RS256 is the option for an identity provider: its public keys come from
a JWKS URL, fetched off the event loop and cached. Exactly one algorithm is accepted per
deployment, so an RS256 deployment never accepts an HS256 token (no algorithm confusion).

Tokens are verified by PyJWT; RS256 signatures by PyJWT's RSA algorithm on the
``cryptography`` package. Each JWKS entry becomes a :class:`jwt.PyJWK` bound to RS256,
so PyJWT refuses a token whose header names any other algorithm for that key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tongxin.runtime.errors import ApiError

if TYPE_CHECKING:
    from tongxin.runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

HS256 = "HS256"
RS256 = "RS256"
MIN_RSA_BITS = 2048
# Signed-in people (tongxin.accounts) carry their token in this HttpOnly cookie; a service
# that mounts the accounts accepts it (TokenVerifier.cookie_sessions). A write made with
# it must name the session's CSRF token in this header (docs/security.md, "Accounts and
# sign-in").
SESSION_COOKIE = "tongxin_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# the members of a JWK that describe a public RSA signing key (private members are dropped)
_PUBLIC_RSA_MEMBERS = ("kty", "kid", "use", "alg", "n", "e")


class Role(StrEnum):
    """Who a token speaks for."""

    STAFF = "staff"
    DEPARTMENT = "department"
    VOLUNTEER = "volunteer"
    ADMIN = "admin"
    PLATFORM = "platform"


# The role sets every service authorizes with, defined once:
# who runs the platform — town, county and community staff, and admins (coordinators)
STAFF_ROLES = frozenset({Role.STAFF, Role.ADMIN})
# who acts as the unit its token names — a department's or another platform's system
UNIT_ROLES = frozenset({Role.DEPARTMENT, Role.PLATFORM})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    sub: str
    role: Role
    unit: str | None = None


def _unauthorized(message: str = "Invalid or expired token.") -> ApiError:
    return ApiError(401, "unauthorized", message)


# --- RS256 ----------------------------------------------------------------------------------


def rs256_key_from_jwk(jwk: Mapping[str, Any]) -> jwt.PyJWK:
    """An RS256 signing key from one JWK; ValueError for anything else.

    Only ``kty: RSA`` keys with ``use: sig`` and ``alg: RS256`` (when given) and at least
    :data:`MIN_RSA_BITS` bits are accepted; private members, if any, are ignored.
    """
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
        raise ValueError("not an RSA key")
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", RS256) != RS256:
        raise ValueError("not an RS256 signing key")
    if not isinstance(jwk.get("kid", ""), str):
        raise ValueError("'kid' is not a string")
    public = {name: jwk[name] for name in _PUBLIC_RSA_MEMBERS if name in jwk}
    try:
        key = jwt.PyJWK(public, algorithm=RS256)  # bound to RS256 whatever a token says
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        raise ValueError(f"unusable RSA key: {exc}") from exc
    if not isinstance(key.key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys shorter than {MIN_RSA_BITS} bits are refused")
    return key


Fetch = Callable[[str, float], bytes]


def _http_get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read(1024 * 1024)
        return body


class JwksKeys:
    """RS256 signing keys of a JWKS URL, cached for ``ttl_s``.

    A token with an unknown ``kid`` refreshes the set (key rotation), at most once every
    ``min_refresh_s`` so a flood of forged ``kid`` values cannot hammer the identity
    provider. When a refresh fails, the keys already known keep working. The fetch
    blocks, so async callers run it in a worker thread (:meth:`get_async`).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 300.0,
        min_refresh_s: float = 10.0,
        timeout_s: float = 5.0,
        fetch: Fetch = _http_get,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._tried_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def cached(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for ``kid`` when it is known and the set is fresh; no I/O."""
        if self._fetched_at is None or self._clock() - self._fetched_at > self.ttl_s:
            return None
        return self._pick(kid)

    def _pick(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def get(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for ``kid``, refreshing the set when needed (blocking)."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self.ttl_s
            key = None if stale else self._pick(kid)
            if key is not None:
                return key
            may_refresh = self._tried_at is None or now - self._tried_at >= self.min_refresh_s
            if stale or may_refresh:
                self._refresh(now)
            return self._pick(kid)

    async def get_async(self, kid: str | None) -> jwt.PyJWK | None:
        """:meth:`get` off the event loop (only a cache miss leaves the loop)."""
        key = self.cached(kid)
        if key is not None:
            return key
        return await asyncio.to_thread(self.get, kid)

    def _refresh(self, now: float) -> None:
        self._tried_at = now
        try:
            document = json.loads(self._fetch(self.url, self.timeout_s))
            entries = document["keys"]
            if not isinstance(entries, list):
                raise ValueError("'keys' is not a list")
        except Exception as exc:
            log.warning("JWKS fetch failed", extra={"url": self.url, "error": repr(exc)})
            if not self._keys:
                raise ApiError(
                    503,
                    "auth_unavailable",
                    "The signing keys of the identity provider are unavailable; try again shortly.",
                ) from exc
            return
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in entries:
            try:
                key = rs256_key_from_jwk(entry)
            except ValueError:
                continue  # another algorithm, an encryption key, a weak key: not ours
            keys[key.key_id] = key
        self.fetches += 1
        self._keys = keys
        self._fetched_at = now


# --- the verifier ---------------------------------------------------------------------------


class TokenVerifier:
    """Turns a bearer token into a :class:`Principal`, or raises 401."""

    def __init__(
        self,
        algorithm: str = HS256,
        *,
        secret: str | None = None,
        keys: JwksKeys | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if algorithm == HS256 and not secret:
            raise ValueError("HS256 needs a secret")
        if algorithm == RS256 and keys is None:
            raise ValueError("RS256 needs a JWKS")
        if algorithm not in (HS256, RS256):
            raise ValueError(f"unsupported algorithm {algorithm}")
        self.algorithm = algorithm
        self.secret = secret
        self.keys = keys
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> TokenVerifier:
        """The verifier the settings describe (``TONGXIN_JWT_ALGORITHM`` and friends)."""
        keys = None
        if settings.jwt_algorithm == RS256:
            assert settings.jwks_url is not None  # the settings validate this
            keys = JwksKeys(settings.jwks_url, ttl_s=settings.jwks_cache_s)
        return cls(
            settings.jwt_algorithm,
            secret=settings.jwt_secret,
            keys=keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )

    def _kid(self, token: str) -> str | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthorized() from exc
        if header.get("alg") != self.algorithm:
            raise _unauthorized()
        kid = header.get("kid")
        return str(kid) if kid is not None else None

    def _decode(self, token: str, key: Any) -> Principal:
        require = ["sub", "exp"]
        if self.issuer:
            require.append("iss")
        if self.audience:
            require.append("aud")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],  # the one algorithm of this deployment
                options={"require": require, "enforce_minimum_key_length": self.algorithm == RS256},
                issuer=self.issuer,
                audience=self.audience,
            )
            role = Role(str(claims.get("role")))
        except (jwt.PyJWTError, ValueError) as exc:
            raise _unauthorized() from exc
        unit = claims.get("unit")
        return Principal(sub=str(claims["sub"]), role=role, unit=str(unit) if unit else None)

    def verify(self, token: str) -> Principal:
        """Verify a token (blocking when the JWKS must be fetched)."""
        if self.algorithm == HS256:
            return self._decode(token, self.secret)
        assert self.keys is not None
        key = self.keys.get(self._kid(token))
        if key is None:
            raise _unauthorized()
        return self._decode(token, key)

    async def verify_async(self, token: str) -> Principal:
        """Verify a token; a JWKS fetch runs in a worker thread, never on the loop."""
        if self.algorithm == HS256:
            return self._decode(token, self.secret)
        assert self.keys is not None
        key = await self.keys.get_async(self._kid(token))
        if key is None:
            raise _unauthorized()
        return self._decode(token, key)

    async def principal(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer …`` header, None when absent."""
        token = bearer_token(authorization)
        return None if token is None else await self.verify_async(token)

    # set by a service that mounts the accounts: the session cookie authenticates too, while
    # ``session_check(request, principal, claims)`` says the session still stands (its
    # account active, not ended by a password change, reset or deactivation)
    cookie_sessions: bool = False
    session_check: Callable[[Request, Principal, dict[str, Any]], Awaitable[bool]] | None = None

    async def dependency(self, request: Request) -> Principal | None:
        """FastAPI dependency: the caller's principal, None for anonymous callers.

        A service installs it over the kernel's ``get_principal``
        (``app.dependency_overrides``), so every route sees the configured algorithm.
        A bearer header wins; without one, and when :attr:`cookie_sessions` is on, the
        session cookie authenticates — a write only from the same site with the CSRF token.
        """
        authorization = request.headers.get("authorization")
        if authorization or not self.cookie_sessions:
            return await self.principal(authorization)
        session = await self.cookie_session(request)
        return None if session is None else session[1]

    async def cookie_session(self, request: Request) -> tuple[str, Principal] | None:
        """The session cookie's token and principal; None when there is no valid session
        (an expired or revoked cookie makes an anonymous caller, as no cookie does). 403 when the
        request comes from another site, or is a write without the session's CSRF token."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token or not self.cookie_sessions or not self.secret:
            return None
        try:
            principal = await self.verify_async(token)
        except ApiError:
            return None
        if self.session_check is not None:
            claims = jwt.decode(token, options={"verify_signature": False})  # verified above
            if not await self.session_check(request, principal, claims):
                return None
        if cross_site(request):
            raise ApiError(403, "cross_site", "Requests from another site are refused.")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent, csrf_token(self.secret, token)):
                raise ApiError(
                    403, "csrf", "The X-CSRF-Token header is missing or wrong; sign in again."
                )
        return token, principal


def install_verifier(app: FastAPI, settings: ServiceSettings) -> TokenVerifier:
    """Authenticate every route of ``app`` with the configured algorithm.

    The kernel's ``get_principal`` dependency knows HS256 only; this replaces it for the
    whole app (FastAPI ``dependency_overrides``), so ``CurrentPrincipal`` and
    ``OptionalPrincipal`` accept exactly what the settings allow.
    """
    verifier = TokenVerifier.from_settings(settings)
    app.dependency_overrides[get_principal] = verifier.dependency
    app.state.verifier = verifier
    return verifier


def csrf_token(secret: str, session_token: str) -> str:
    """The CSRF token of a session: an HMAC of its token, so it cannot be planted apart from
    the session and needs no storage (signed double submit)."""
    mac = hmac.new(secret.encode(), b"csrf:" + session_token.encode(), hashlib.sha256)
    return mac.hexdigest()


def cross_site(request: Request) -> bool:
    """Whether a browser says this request comes from another site: ``Sec-Fetch-Site``
    (cross-site, same-site), else an ``Origin`` that is not this host. Callers that send
    neither (API clients, curl) are not browsers and carry no ambient cookie."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "")
    return origin.partition("://")[2].rstrip("/") != host


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header; None when absent, else 401."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("Use 'Authorization: Bearer <token>'.")
    return token.strip()


# --- HS256 helpers (development tokens, and the kernel's default dependency) ---------------


def mint_token(
    secret: str,
    *,
    sub: str,
    role: Role,
    unit: str | None = None,
    ttl_s: int = 8 * 3600,
    extra: Mapping[str, object] | None = None,
) -> str:
    """A signed HS256 development/service token (``extra``: more claims, e.g. a sign-in
    session's generation)."""
    now = int(time.time())
    claims: dict[str, object] = {**(extra or {})}
    claims.update({"sub": sub, "role": role.value, "iat": now, "exp": now + ttl_s})
    if unit:
        claims["unit"] = unit
    return jwt.encode(claims, secret, algorithm=HS256)


def decode_token(secret: str, token: str) -> Principal:
    """Verify an HS256 token; 401 for anything invalid or expired."""
    return TokenVerifier(HS256, secret=secret).verify(token)


def principal_from_header(secret: str, authorization: str | None) -> Principal | None:
    """The principal of an HS256 ``Authorization: Bearer …`` header, None when absent."""
    token = bearer_token(authorization)
    return None if token is None else decode_token(secret, token)


# Declares the bearer scheme in /openapi.json (and the docs' Authorize button); routes that
# read the principal list it. The header itself is parsed by the verifier.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A JWT with claims sub, role, unit, exp (SPEC §4).",
)


def get_principal(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Principal | None:
    """FastAPI dependency: the bearer-token principal, or None for anonymous callers."""
    settings: ServiceSettings = request.app.state.rt.settings
    return principal_from_header(settings.jwt_secret, request.headers.get("authorization"))


OptionalPrincipal = Annotated[Principal | None, Depends(get_principal)]


def require_principal(principal: OptionalPrincipal) -> Principal:
    """FastAPI dependency: a valid bearer token is required."""
    if principal is None:
        raise ApiError(401, "unauthorized", "A bearer token is required.")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
