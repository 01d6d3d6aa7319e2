"""Signing in through the county's identity provider: OpenID Connect, authorization code
flow with PKCE (S256), as a confidential client (``client_secret_basic``).

Authlib does the OAuth 2 client's part (the authorization URL with its code challenge, the
token request with the code verifier); its OpenID Connect claims rules and joserfc (Authlib's
JOSE library) check the ID token: signed with a key of the provider's JWKS by an algorithm it
announces (never ``none`` nor a shared secret), from the configured issuer, for this client,
unexpired, carrying the nonce of this sign-in. The provider is found by discovery from the
issuer (``/.well-known/openid-configuration``), whose ``issuer`` must be the configured one.

What a sign-in must remember between leaving for the provider and coming back (its state,
nonce and code verifier) travels in a short-lived cookie of its own, signed with the
platform's secret (:func:`seal_flow`): the callback is only accepted in the browser that
started the sign-in, once, within :data:`FLOW_TTL_S`.

No I/O beyond the provider; the accounts' use cases decide who the claims are
(:meth:`tongxin.accounts.service.AccountService.sign_in_external`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from authlib.integrations.base_client import OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt as jose_jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

with warnings.catch_warnings():
    # Authlib 1.9 would rather run on the httpx2 fork and says so on every start when it
    # finds httpx, which the platform uses everywhere and its client works with alike
    warnings.filterwarnings("ignore", "The httpx module is deprecated", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = logging.getLogger(__name__)

# the cookie holding a sign-in under way (state, nonce, code verifier), and how long it lasts
FLOW_COOKIE = "tongxin_oidc"
FLOW_TTL_S = 600
_FLOW_AUDIENCE = "tongxin:oidc-flow"
# ID token signatures accepted: the provider's keys only (asymmetric; no "none", no HS*)
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# discovery and keys are read again after this long (a provider rotates its keys)
METADATA_TTL_S = 3600.0
# clock skew tolerated on exp / iat / nbf
LEEWAY_S = 60


class OidcFailed(Exception):
    """The identity provider's answer cannot sign anybody in: ``reason`` is a stable code
    (``state_mismatch``, ``provider_error``, ``invalid_id_token``, ``provider_unavailable``,
    ``missing_claim``), the message says what was wrong (for the log and the audit record,
    never a token)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Flow:
    """One sign-in under way: the values the callback must match or prove."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Flow:
        # RFC 7636: a verifier of 43–128 unreserved characters; 64 bytes of randomness
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64))


def seal_flow(flow: Flow, secret: str, now: float | None = None) -> str:
    """The flow as the value of its cookie: signed (HS256, the platform's secret), expiring."""
    issued = int(time.time() if now is None else now)
    claims = {
        "aud": _FLOW_AUDIENCE,
        "iat": issued,
        "exp": issued + FLOW_TTL_S,
        "state": flow.state,
        "nonce": flow.nonce,
        "cv": flow.verifier,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def open_flow(sealed: str | None, secret: str) -> Flow | None:
    """The flow a cookie holds; None when there is none, or it is forged or expired."""
    if not sealed:
        return None
    try:
        c = jwt.decode(sealed, secret, algorithms=["HS256"], audience=_FLOW_AUDIENCE)
        return Flow(str(c["state"]), str(c["nonce"]), str(c["cv"]))
    except (jwt.PyJWTError, KeyError):
        return None


def state_matches(flow: Flow, state: str | None) -> bool:
    """Whether the callback's ``state`` is the one this browser's sign-in sent."""
    return state is not None and hmac.compare_digest(flow.state.encode(), state.encode())


def validate_id_token(
    id_token: str,
    keys: KeySet,
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: list[str],
    access_token: str | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """The claims of an ID token from the token endpoint, checked (OpenID Connect Core
    §3.1.3.7): its signature by one of ``keys`` with one of ``algorithms``; ``iss`` the
    issuer; ``aud`` naming this client (and ``azp`` this client when there are several
    audiences); ``exp`` not passed; ``iat`` present; ``nonce`` this sign-in's; ``at_hash``
    matching the access token when given. Raises joserfc's errors when not."""
    decoded = jose_jwt.decode(id_token, keys, registry=JWSRegistry(algorithms=algorithms))
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": client_id},
        "nonce": {"essential": True, "value": nonce},
    }
    params: dict[str, Any] = {"nonce": nonce, "client_id": client_id}
    if access_token:
        params["access_token"] = access_token
    claims = CodeIDToken(decoded.claims, decoded.header, options, params)
    claims.validate(now=now, leeway=LEEWAY_S)
    return dict(claims)


class OidcClient:
    """The relying party: where to send a person, and who they are when they come back."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scope: str,
        claim: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.claim = claim
        self.timeout_s = timeout_s
        self.transport = transport
        self.http = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the pooled connections (discovery, keys)."""
        await self.http.aclose()

    def _oauth(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none",
            scope=self.scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.timeout_s,
            transport=self.transport,
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        r = await self.http.get(url, headers={"accept": "application/json"})
        r.raise_for_status()
        body = r.json()
        if not isinstance(body, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return body

    async def metadata(self, refresh: bool = False) -> dict[str, Any]:
        """The provider's configuration (discovery), cached for :data:`METADATA_TTL_S`."""
        async with self._lock:
            fresh = time.monotonic() - self._read_at < METADATA_TTL_S
            if self._metadata is not None and fresh and not refresh:
                return self._metadata
            try:
                found = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcFailed(
                    "provider_unavailable", f"discovery at {self.issuer} failed: {exc!r}"
                ) from exc
            # OpenID Connect Discovery §4.3: the issuer must be exactly the one asked
            if str(found.get("issuer", "")).rstrip("/") != self.issuer:
                raise OidcFailed(
                    "provider_error", "the discovered issuer is not the configured one"
                )
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(key), str):
                    raise OidcFailed("provider_error", f"the provider's configuration has no {key}")
            self._metadata, self._keys, self._read_at = found, None, time.monotonic()
            return found

    async def _key_set(self, refresh: bool = False) -> KeySet:
        meta = await self.metadata()
        if self._keys is None or refresh:
            try:
                self._keys = KeySet.import_key_set(await self._get_json(meta["jwks_uri"]))  # type: ignore[arg-type]
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                raise OidcFailed("provider_unavailable", f"the provider's keys: {exc!r}") from exc
        return self._keys

    async def begin(self, redirect_uri: str) -> tuple[str, Flow]:
        """Where to send the browser to sign in, and the flow to keep until it is back."""
        meta = await self.metadata()
        flow = Flow.new()
        async with self._oauth(redirect_uri) as oauth:
            url, _ = oauth.create_authorization_url(
                meta["authorization_endpoint"],
                state=flow.state,
                code_verifier=flow.verifier,
                nonce=flow.nonce,
            )
        return str(url), flow

    async def finish(self, flow: Flow, code: str, redirect_uri: str) -> dict[str, Any]:
        """The person's validated claims: the code exchanged (with the PKCE verifier) for
        tokens, the ID token checked, and when the matching claim is not in it, the
        userinfo of the same subject added."""
        meta = await self.metadata()
        try:
            async with self._oauth(redirect_uri) as oauth:
                token = await oauth.fetch_token(
                    meta["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=flow.verifier,
                    redirect_uri=redirect_uri,
                )
        except OAuthError as exc:
            raise OidcFailed(
                "provider_error", f"the token request was refused: {exc.error}"
            ) from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcFailed("provider_unavailable", f"the token request failed: {exc!r}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcFailed("invalid_id_token", "the token response carries no ID token")
        access_token = token.get("access_token")
        claims = await self._validated(id_token, flow.nonce, access_token, meta)
        if self.claim not in claims and access_token and meta.get("userinfo_endpoint"):
            claims = {**await self._userinfo(meta["userinfo_endpoint"], access_token, claims)}
        if not isinstance(claims.get(self.claim), str) or not claims[self.claim]:
            raise OidcFailed("missing_claim", f"the provider did not tell {self.claim}")
        return claims

    async def _validated(
        self, id_token: str, nonce: str, access_token: str | None, meta: dict[str, Any]
    ) -> dict[str, Any]:
        announced = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in announced if a in ASYMMETRIC] or ["RS256"]

        def check(keys: KeySet) -> dict[str, Any]:
            return validate_id_token(
                id_token,
                keys,
                issuer=self.issuer,
                client_id=self.client_id,
                nonce=nonce,
                algorithms=algorithms,
                access_token=access_token,
            )

        try:
            try:
                return check(await self._key_set())
            except InvalidKeyIdError:  # a key the provider rotated in since: read them again
                return check(await self._key_set(refresh=True))
        except JoseError as exc:
            raise OidcFailed("invalid_id_token", f"the ID token was refused: {exc!r}") from exc

    async def _userinfo(
        self, url: str, access_token: str, claims: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            r = await self.http.get(url, headers={"authorization": f"Bearer {access_token}"})
            r.raise_for_status()
            info = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcFailed("provider_unavailable", f"userinfo failed: {exc!r}") from exc
        # OpenID Connect Core §5.3.2: userinfo of another subject must not be used
        if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
            raise OidcFailed("provider_error", "userinfo names another subject")
        return {**info, **claims}
