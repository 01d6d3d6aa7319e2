"""The accounts' HTTP API: sign-in sessions (``/v1/session``) and the admins' account
administration (``/v1/accounts``). HTTP only: parse, authorize, call the service.

The session is the platform's own HS256 token in an ``HttpOnly``, ``SameSite=Strict``
cookie (``Secure`` outside development and test); its CSRF token (an HMAC of it) is
answered in the body and must come back in ``X-CSRF-Token`` on every write the cookie
authenticates. Bearer tokens keep working everywhere and need no CSRF token.

With an identity provider configured (``TONGXIN_OIDC_ISSUER``), ``/v1/session/oidc/login``
sends the browser there (OpenID Connect, code flow with PKCE) and its callback signs the
matching account in through the same session cookie, then returns to the console.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import jwt
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from tongxin.accounts.config import AccountSettings
from tongxin.accounts.domain.accounts import Account
from tongxin.accounts.oidc import (
    FLOW_COOKIE,
    FLOW_TTL_S,
    OidcClient,
    OidcFailed,
    open_flow,
    seal_flow,
    state_matches,
)
from tongxin.accounts.service import AccountService, Actor, Refused
from tongxin.runtime.auth import (
    HS256,
    SESSION_COOKIE,
    CurrentPrincipal,
    Principal,
    Role,
    TokenVerifier,
    cross_site,
    csrf_token,
    mint_token,
)
from tongxin.runtime.errors import ApiError, error_body
from tongxin.runtime.openapi import ErrorResponse

log = logging.getLogger(__name__)

SIGN_IN_AGAIN = "请重新登录。"
# the claim of a session token naming its account's session generation
SESSION_GEN = "sgen"


def _answers(**statuses: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI error answers (SPEC shape) of a route, by status: description."""
    return {int(k[1:]): {"model": ErrorResponse, "description": v} for k, v in statuses.items()}


SIGN_IN_ANSWERS = _answers(
    s401="Wrong name or password (the same answer for both).",
    s403="Another site's page (cross_site), a deactivated account (account_disabled), or a "
    "new or reset password that must be changed first (password_change_required).",
    s422="Not valid; for a new password, the policy's reason in zh-CN (weak_password).",
    s429="Locked after too many failed sign-ins; try again after Retry-After seconds.",
    s501="Password sign-in needs TONGXIN_JWT_ALGORITHM=HS256.",
)
COOKIE_ANSWERS = _answers(s403="A session cookie sent from another site's page (cross_site).")

session_router = APIRouter(prefix="/v1/session", tags=["session"])
accounts_router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignIn(_Model):
    """Name and password."""

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256, repr=False)


class PasswordChange(_Model):
    """A new password, proven by the current one."""

    name: str = Field(min_length=1, max_length=64)
    current_password: str = Field(min_length=1, max_length=256, repr=False)
    new_password: str = Field(min_length=1, max_length=256, repr=False)


class SessionRead(BaseModel):
    """Who is signed in, until when, and the CSRF token of the session (cookie sessions)."""

    # the token's subject: the login name (a volunteer's account: their volunteer id)
    name: str
    display_name: str | None = None
    role: str
    unit: str | None
    expires_at: datetime
    csrf_token: str | None = None


class AccountCreate(_Model):
    """A new account; its initial password must be changed at the first sign-in."""

    name: str = Field(min_length=2, max_length=40, examples=["liyuan-wang"])
    display_name: str = Field(default="", max_length=64, examples=["王芳"])
    role: Role = Field(examples=["staff"])
    unit: str | None = Field(default=None, max_length=80, examples=["community:liyuan"])
    # a volunteer's account answers as their volunteer id (the token's sub); default: name
    subject: str | None = Field(default=None, max_length=80)
    password: str = Field(min_length=1, max_length=256, repr=False)


class PasswordReset(_Model):
    """A temporary password the account must change at its next sign-in."""

    password: str = Field(min_length=1, max_length=256, repr=False)


class AccountRead(BaseModel):
    """An account as admins see it (never its password hash)."""

    name: str
    display_name: str
    role: str
    unit: str | None
    subject: str
    active: bool
    must_change_password: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: Account) -> AccountRead:
        return cls(
            name=a.name,
            display_name=a.display_name,
            role=a.role,
            unit=a.unit,
            subject=a.subject,
            active=a.active,
            must_change_password=a.must_change_password,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


# — dependencies —


def get_accounts(request: Request) -> AccountService:
    """FastAPI dependency: the accounts' use cases (built in the lifespan)."""
    service: AccountService = request.app.state.rt.extra["accounts"]
    return service


AccountsDep = Annotated[AccountService, Depends(get_accounts)]


def _verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


def client_address(request: Request) -> str:
    """Who is asking: the peer, or behind a trusted proxy its appended X-Forwarded-For."""
    if getattr(request.app.state, "trust_forwarded_for", False):
        last = request.headers.get("x-forwarded-for", "").rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.client.host if request.client else "unknown"


def require_admin(principal: CurrentPrincipal) -> Principal:
    """FastAPI dependency: an admin's token or session."""
    if principal.role != Role.ADMIN:
        raise ApiError(403, "forbidden", "Only admins manage accounts.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def _refused(exc: Refused) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=headers)


def _may_sign_in(request: Request) -> None:
    """Sign-in from another site's page (login CSRF) is refused, and so is sign-in where
    the platform does not mint its own tokens (RS256: they come from the identity provider)."""
    if cross_site(request):
        raise ApiError(403, "cross_site", "Requests from another site are refused.")
    if _settings(request).jwt_algorithm != HS256:
        raise ApiError(501, "not_supported", "Password sign-in needs TONGXIN_JWT_ALGORITHM=HS256.")


def _settings(request: Request) -> AccountSettings:
    settings: AccountSettings = request.app.state.settings
    return settings


def _expiry(token: str) -> datetime:
    claims = jwt.decode(token, options={"verify_signature": False})  # verified before
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


def _mint_session(request: Request, account: Account) -> tuple[str, SessionRead]:
    """A session of ``account``: its token (for the cookie) and what to answer about it
    (with its CSRF token). Every way of signing in mints here."""
    settings = _settings(request)
    token = mint_token(
        settings.jwt_secret,
        sub=account.subject,
        role=Role(account.role),
        unit=account.unit,
        ttl_s=settings.session_ttl_s,
        extra={SESSION_GEN: account.session_gen},
    )
    return token, SessionRead(
        name=account.subject,
        display_name=account.display_name,
        role=account.role,
        unit=account.unit,
        expires_at=_expiry(token),
        csrf_token=csrf_token(settings.jwt_secret, token),
    )


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    """The session cookie on ``response``: HttpOnly, SameSite=Strict, Secure outside
    development and test; the answer is not cached."""
    settings = _settings(request)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_s,
        path="/",
        httponly=True,
        secure=settings.secure_cookies,
        samesite="strict",
    )
    response.headers["cache-control"] = "no-store"


def _start_session(request: Request, account: Account) -> JSONResponse:
    token, body = _mint_session(request, account)
    response = JSONResponse(body.model_dump(mode="json"), 200)
    _set_session_cookie(request, response, token)
    return response


# — the session —


@session_router.post("", response_model=SessionRead, responses=SIGN_IN_ANSWERS)
async def sign_in(body: SignIn, request: Request, accounts: AccountsDep) -> Response:
    """Sign in with name and password: the session cookie, and its CSRF token in the body.

    Wrong name or password: 401 (the same answer for both). Five failures within 15
    minutes lock the name for 15 minutes (429 with ``Retry-After``), as do many failures
    from one client. An account with a new or reset password gets 403
    ``password_change_required``: set one with ``POST /v1/session/password``."""
    _may_sign_in(request)
    actor = Actor(body.name.strip().lower(), client_address(request))
    try:
        account = await accounts.sign_in(actor.name, body.password, actor)
    except Refused as exc:
        return _refused(exc)
    return _start_session(request, account)


@session_router.post("/password", response_model=SessionRead, responses=SIGN_IN_ANSWERS)
async def change_password(
    body: PasswordChange, request: Request, accounts: AccountsDep
) -> Response:
    """Set a new password, proven by the current one (the first sign-in's, a reset's or
    one's own); then signed in. Throttled as sign-in is."""
    _may_sign_in(request)
    actor = Actor(body.name.strip().lower(), client_address(request))
    try:
        account = await accounts.change_password(
            actor.name, body.current_password, body.new_password, actor
        )
    except Refused as exc:
        return _refused(exc)
    return _start_session(request, account)


@session_router.get(
    "",
    response_model=SessionRead,
    responses={**COOKIE_ANSWERS, **_answers(s401="Nobody is signed in: 请重新登录。")},
)
async def who_is_signed_in(request: Request, accounts: AccountsDep) -> SessionRead:
    """Who the session cookie (or a bearer token) speaks for, and until when; 401
    请重新登录 when nobody is signed in or the session expired."""
    verifier = _verifier(request)
    authorization = request.headers.get("authorization")
    session = None if authorization else await verifier.cookie_session(request)
    if session is not None:
        token, principal = session
        csrf: str | None = csrf_token(_settings(request).jwt_secret, token)
    else:
        token = (authorization or "").partition(" ")[2].strip()
        principal_or_none = await verifier.principal(authorization) if authorization else None
        if principal_or_none is None:
            raise ApiError(401, "unauthorized", SIGN_IN_AGAIN)
        principal, csrf = principal_or_none, None
    account = await accounts.by_subject(principal.sub)
    return SessionRead(
        name=principal.sub,
        display_name=account.display_name if account is not None else None,
        role=principal.role.value,
        unit=principal.unit,
        expires_at=_expiry(token),
        csrf_token=csrf,
    )


@session_router.delete("", status_code=204, responses=COOKIE_ANSWERS)
async def sign_out(request: Request) -> Response:
    """Sign out: the session cookie is cleared (idempotent)."""
    if cross_site(request):
        raise ApiError(403, "cross_site", "Requests from another site are refused.")
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        secure=_settings(request).secure_cookies,
        samesite="strict",
    )
    return response


# — signing in through the identity provider (OpenID Connect) —

# where a sign-in through the identity provider ends, signed in or with ?oidc_error=<code>
CONSOLE = "/console/"
# the sign-in-under-way cookie is sent only to these routes
OIDC_PATH = "/v1/session/oidc"


class OidcOffer(BaseModel):
    """Whether people may sign in through the county's identity provider here."""

    enabled: bool


def _oidc(request: Request) -> OidcClient:
    client: OidcClient | None = request.app.state.rt.extra.get("oidc")
    if client is None:
        raise ApiError(404, "not_found", "Sign-in through an identity provider is not configured.")
    return client


def _redirect_uri(request: Request) -> str:
    return _settings(request).oidc_redirect_uri or str(request.url_for("oidc_callback"))


def _back_to_console(request: Request, error: str | None = None) -> RedirectResponse:
    """To the console (with the reason it was not signed in), the flow's cookie gone."""
    url = CONSOLE if error is None else f"{CONSOLE}?{urlencode({'oidc_error': error})}"
    response = RedirectResponse(url, status_code=303)
    response.delete_cookie(
        FLOW_COOKIE,
        path=OIDC_PATH,
        httponly=True,
        secure=_settings(request).secure_cookies,
        samesite="lax",
    )
    response.headers["cache-control"] = "no-store"
    return response


@session_router.get("/oidc", response_model=OidcOffer)
async def oidc_offer(request: Request) -> OidcOffer:
    """Whether the console shows "通过统一身份认证登录" (an identity provider is configured)."""
    return OidcOffer(enabled=request.app.state.rt.extra.get("oidc") is not None)


@session_router.get(
    "/oidc/login",
    status_code=303,
    responses=_answers(s404="No identity provider is configured."),
)
async def oidc_login(request: Request) -> Response:
    """Leave for the identity provider's sign-in (303): an authorization request with a
    fresh state, nonce and PKCE S256 challenge, which a cookie of this browser keeps for
    10 minutes (signed; ``SameSite=Lax``, as the provider's redirect back is cross-site)."""
    client = _oidc(request)
    try:
        url, flow = await client.begin(_redirect_uri(request))
    except OidcFailed as exc:
        log.warning(
            "identity provider unavailable", extra={"reason": exc.reason, "error": str(exc)}
        )
        return _back_to_console(request, "oidc_unavailable")
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        seal_flow(flow, _settings(request).jwt_secret),
        max_age=FLOW_TTL_S,
        path=OIDC_PATH,
        httponly=True,
        secure=_settings(request).secure_cookies,
        samesite="lax",
    )
    response.headers["cache-control"] = "no-store"
    return response


@session_router.get(
    "/oidc/callback",
    status_code=303,
    responses=_answers(s404="No identity provider is configured."),
)
async def oidc_callback(
    request: Request,
    accounts: AccountsDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    iss: str | None = None,
) -> Response:
    """The identity provider's redirect back (303 to the console either way).

    Accepted only in the browser that started the sign-in, once, with its state; the code
    is exchanged with the PKCE verifier and the ID token validated (signature by the
    provider's JWKS, issuer, audience, expiry, nonce). The account whose login name is the
    configured claim's value (``TONGXIN_OIDC_CLAIM``) is signed in with the session cookie
    of a password sign-in. Otherwise no cookie, and ``/console/?oidc_error=`` one of
    ``oidc_expired`` (no sign-in under way here, or another state), ``oidc_failed`` (the
    provider refused, or its answer did not validate), ``oidc_unavailable``, ``no_account``,
    ``account_disabled``. Every outcome is an audit record."""
    client = _oidc(request)
    actor = Actor("-", client_address(request))
    flow = open_flow(request.cookies.get(FLOW_COOKIE), _settings(request).jwt_secret)
    reason, shown = None, "oidc_failed"
    if flow is None or not state_matches(flow, state):
        reason, shown = "state_mismatch", "oidc_expired"
    elif iss is not None and iss.rstrip("/") != client.issuer:  # RFC 9207: mix-up
        reason = "issuer_mismatch"
    elif error is not None or not code:
        reason = "provider_refused"
    if reason is not None or flow is None or code is None:
        said = error[:200] if error is not None else None  # the provider's error code
        await accounts.external_failed(reason or "provider_refused", actor, error=said)
        return _back_to_console(request, shown)
    try:
        claims = await client.finish(flow, code, _redirect_uri(request))
    except OidcFailed as exc:
        log.warning("sign-in through the identity provider failed", extra={"reason": exc.reason})
        await accounts.external_failed(exc.reason, actor, error=str(exc))
        unavailable = exc.reason == "provider_unavailable"
        return _back_to_console(request, "oidc_unavailable" if unavailable else "oidc_failed")
    login = str(claims[client.claim])
    try:
        account = await accounts.sign_in_external(
            login, Actor(login, actor.client), subject=str(claims.get("sub", ""))
        )
    except Refused as exc:
        return _back_to_console(request, exc.code)
    token, _session = _mint_session(request, account)
    response = _back_to_console(request)
    _set_session_cookie(request, response, token)
    return response


# — administration (admins only) —


@accounts_router.get("", response_model=list[AccountRead])
async def list_accounts(_admin: AdminPrincipal, accounts: AccountsDep) -> list[AccountRead]:
    """Every account, by name (never a password hash)."""
    return [AccountRead.of(a) for a in await accounts.accounts()]


@accounts_router.post(
    "",
    response_model=AccountRead,
    status_code=201,
    responses=_answers(
        s409="The name is taken (account_exists), or the subject (a volunteer's id) has an "
        "account already (subject_taken: reset that one's password instead).",
        s422="Not a valid account or password (zh-CN reason).",
    ),
)
async def create_account(
    body: AccountCreate, request: Request, admin: AdminPrincipal, accounts: AccountsDep
) -> Any:
    """Create an account with an initial password it must change at its first sign-in."""
    try:
        account = await accounts.create(
            Actor(admin.sub, client_address(request)),
            name=body.name,
            display_name=body.display_name,
            role=body.role.value,
            unit=body.unit,
            password=body.password,
            subject=body.subject,
        )
    except Refused as exc:
        return _refused(exc)
    return AccountRead.of(account)


@accounts_router.post(
    "/{name}/password",
    response_model=AccountRead,
    responses=_answers(s422="The password policy's reason (zh-CN)."),
)
async def reset_password(
    name: str, body: PasswordReset, request: Request, admin: AdminPrincipal, accounts: AccountsDep
) -> Any:
    """Reset a password: the account must change it at its next sign-in (lifts a lockout)."""
    try:
        account = await accounts.reset_password(
            Actor(admin.sub, client_address(request)), name, body.password
        )
    except Refused as exc:
        return _refused(exc)
    return AccountRead.of(account)


async def _set_active(
    name: str, active: bool, request: Request, admin: Principal, accounts: AccountService
) -> Any:
    try:
        account = await accounts.set_active(Actor(admin.sub, client_address(request)), name, active)
    except Refused as exc:
        return _refused(exc)
    return AccountRead.of(account)


@accounts_router.post("/{name}/deactivate", response_model=AccountRead)
async def deactivate(
    name: str, request: Request, admin: AdminPrincipal, accounts: AccountsDep
) -> Any:
    """Deactivate: the account can no longer sign in (a session it holds ends at expiry)."""
    return await _set_active(name, False, request, admin, accounts)


@accounts_router.post("/{name}/activate", response_model=AccountRead)
async def activate(
    name: str, request: Request, admin: AdminPrincipal, accounts: AccountsDep
) -> Any:
    """Activate a deactivated account again."""
    return await _set_active(name, True, request, admin, accounts)


@accounts_router.get("/audit")
async def audit(
    _admin: AdminPrincipal, accounts: AccountsDep, name: str | None = None
) -> list[dict[str, Any]]:
    """The newest 100 audit records (of one account name with ``name``)."""
    return [
        {**r, "at": r["at"].isoformat() if hasattr(r.get("at"), "isoformat") else r.get("at")}
        for r in await accounts.audit(name)
    ]
