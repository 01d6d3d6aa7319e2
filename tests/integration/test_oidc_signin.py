"""Signing in through an identity provider (OpenID Connect, code flow with PKCE) against a
real OpenID Provider (tests/oidc: the certified ``oidc-provider``), intake in process on the
real stack: the matching account gets the password sign-in's session cookie; an unknown or
deactivated one, a tampered state, a replayed callback or a callback from another browser
get none; every outcome is an audit record."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from services.intake.app import create_app
from services.intake.config import IntakeSettings
from tests.integration.accounts.conftest import Lines
from tests.oidc import OpenIDProvider, openid_provider, sign_in_at_provider
from tests.support import on_stack, unique
from tongxin.accounts.oidc import FLOW_COOKIE
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import SESSION_COOKIE, Role, mint_token

BASE = "http://intake"
CALLBACK = f"{BASE}/v1/session/oidc/callback"

# the provider's people (login → claims) and the Tongxin accounts they are
KNOWN = unique("oidc").lower()
GONE = unique("gone").lower()
NOBODY = unique("nobody").lower()
PEOPLE = {
    "wang": {"preferred_username": KNOWN, "name": "王芳"},
    "li": {"preferred_username": GONE, "name": "李强"},
    "stranger": {"preferred_username": NOBODY, "name": "陌生人"},
}


@dataclass
class Setup:
    provider: OpenIDProvider
    settings: IntakeSettings
    http: httpx.AsyncClient  # to intake, in process
    logs: Lines  # every log line written meanwhile

    def admin(self) -> dict[str, str]:
        token = mint_token(self.settings.jwt_secret, sub="admin-1", role=Role.ADMIN)
        return {"authorization": f"Bearer {token}"}

    async def audit(self, name: str) -> list[dict[str, Any]]:
        r = await self.http.get("/v1/accounts/audit", params={"name": name}, headers=self.admin())
        assert r.status_code == 200, r.text
        records: list[dict[str, Any]] = r.json()
        return records


@pytest.fixture(scope="module")
async def oidc(stack: LocalStack) -> AsyncIterator[Setup]:
    with openid_provider(CALLBACK, PEOPLE) as provider:
        settings = IntakeSettings(
            **on_stack(stack, unique("oidc")),
            oidc_issuer=provider.issuer,
            oidc_client_id=provider.client_id,
            oidc_client_secret=provider.client_secret,
        )
        app = create_app(settings)
        logs = Lines()
        logging.getLogger().addHandler(logs)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as http:
                setup = Setup(provider, settings, http, logs)
                for name, unit in ((KNOWN, "community:liyuan"), (GONE, None)):
                    r = await http.post(
                        "/v1/accounts",
                        headers=setup.admin(),
                        json={
                            "name": name,
                            "display_name": PEOPLE["wang"]["name"] if name == KNOWN else "李强",
                            "role": "staff",
                            "unit": unit,
                            "password": f"Initial-{unique('pw')}",
                        },
                    )
                    assert r.status_code == 201, r.text
                r = await http.post(f"/v1/accounts/{GONE}/deactivate", headers=setup.admin())
                assert r.status_code == 200, r.text
                try:
                    yield setup
                finally:
                    logging.getLogger().removeHandler(logs)


def set_cookies(r: httpx.Response) -> dict[str, str]:
    """The Set-Cookie headers of a response, by cookie name."""
    return {h.split("=", 1)[0]: h for h in r.headers.get_list("set-cookie")}


def value(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


async def start(setup: Setup) -> tuple[str, str]:
    """Click "通过统一身份认证登录": the provider's authorization URL and the flow cookie."""
    r = await setup.http.get("/v1/session/oidc/login")
    assert r.status_code == 303, r.text
    cookies = set_cookies(r)
    assert FLOW_COOKIE in cookies and SESSION_COOKIE not in cookies
    return r.headers["location"], value(cookies[FLOW_COOKIE])


async def at_provider(setup: Setup, authorize: str, login: str) -> str:
    """Sign in at the provider's pages as ``login``; the callback URL it sends back."""
    async with httpx.AsyncClient(timeout=30) as browser:
        return await sign_in_at_provider(browser, authorize, login, CALLBACK)


async def callback(setup: Setup, url: str, flow: str | None) -> httpx.Response:
    """The browser arriving at intake's callback (another site sent it: Sec-Fetch-Site)."""
    parts = urlsplit(url)
    headers = {"sec-fetch-site": "cross-site"}
    if flow is not None:
        headers["cookie"] = f"{FLOW_COOKIE}={flow}"
    return await setup.http.get(f"{parts.path}?{parts.query}", headers=headers)


def refused_with(r: httpx.Response, code: str) -> None:
    """Sent back to the console with ``code``, no session cookie, the flow forgotten."""
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/console/?{urlencode({'oidc_error': code})}"
    cookies = set_cookies(r)
    assert SESSION_COOKIE not in cookies
    assert "max-age=0" in cookies[FLOW_COOKIE].lower()


async def test_the_console_is_offered_the_provider(oidc: Setup) -> None:
    r = await oidc.http.get("/v1/session/oidc")
    assert r.status_code == 200 and r.json() == {"enabled": True}


async def test_the_matching_account_signs_in_with_the_session_cookie(oidc: Setup) -> None:
    authorize, flow = await start(oidc)
    # an authorization code request with PKCE S256, state and nonce, for this client
    q = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(f"{oidc.provider.issuer}/")
    assert q["response_type"] == ["code"] and q["client_id"] == [oidc.provider.client_id]
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert q["redirect_uri"] == [CALLBACK] and "openid" in q["scope"][0].split()
    assert q["state"][0] and q["nonce"][0]
    r = await oidc.http.get("/v1/session/oidc/login")
    assert parse_qs(urlsplit(r.headers["location"]).query)["state"] != q["state"]  # fresh

    back = await at_provider(oidc, authorize, "wang")
    assert parse_qs(urlsplit(back).query)["state"] == q["state"]
    r = await callback(oidc, back, flow)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/"
    cookies = set_cookies(r)
    # exactly the password sign-in's cookie
    flags = [f.strip().lower() for f in cookies[SESSION_COOKIE].split(";")[1:]]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "max-age=0" in cookies[FLOW_COOKIE].lower()  # the sign-in under way is over

    session = value(cookies[SESSION_COOKIE])
    me = await oidc.http.get(
        "/v1/session",
        headers={"cookie": f"{SESSION_COOKIE}={session}", "sec-fetch-site": "same-origin"},
    )
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["name"], body["role"], body["unit"]) == (KNOWN, "staff", "community:liyuan")
    assert body["display_name"] == "王芳" and body["csrf_token"]

    records = await oidc.audit(KNOWN)
    assert records[0]["event"] == "signin" and records[0]["outcome"] == "ok", records
    assert records[0]["method"] == "oidc" and records[0]["subject"] == "wang"

    # the same callback again (its code is spent): no second session
    again = await callback(oidc, back, flow)
    refused_with(again, "oidc_failed")


async def test_an_unknown_subject_is_refused(oidc: Setup) -> None:
    authorize, flow = await start(oidc)
    back = await at_provider(oidc, authorize, "stranger")
    r = await callback(oidc, back, flow)
    refused_with(r, "no_account")
    records = await oidc.audit(NOBODY)
    assert [(x["event"], x["outcome"], x["method"]) for x in records] == [
        ("signin", "no_account", "oidc")
    ]


async def test_a_deactivated_account_is_refused(oidc: Setup) -> None:
    authorize, flow = await start(oidc)
    back = await at_provider(oidc, authorize, "li")
    r = await callback(oidc, back, flow)
    refused_with(r, "account_disabled")
    records = await oidc.audit(GONE)
    assert (records[0]["outcome"], records[0]["method"]) == ("inactive", "oidc"), records


async def test_a_tampered_state_is_refused(oidc: Setup) -> None:
    authorize, flow = await start(oidc)
    back = await at_provider(oidc, authorize, "wang")
    parts = urlsplit(back)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    before = len(await oidc.audit("-"))
    tampered = {**q, "state": q["state"][:-2] + ("AA" if not q["state"].endswith("AA") else "BB")}
    r = await callback(oidc, f"{CALLBACK}?{urlencode(tampered)}", flow)
    refused_with(r, "oidc_expired")
    records = await oidc.audit("-")
    assert len(records) == before + 1
    assert (records[0]["outcome"], records[0]["method"]) == ("state_mismatch", "oidc")

    # nor is the genuine callback accepted in a browser that did not start the sign-in
    # (login CSRF: someone else's code), nor a forged flow cookie
    ok_before = [x for x in await oidc.audit(KNOWN) if x["outcome"] == "ok"]
    refused_with(await callback(oidc, back, None), "oidc_expired")
    refused_with(await callback(oidc, back, flow[:-4] + "abcd"), "oidc_expired")
    assert [x for x in await oidc.audit(KNOWN) if x["outcome"] == "ok"] == ok_before
    assert len(await oidc.audit("-")) == before + 3


async def test_without_a_provider_the_console_offers_none(stack: LocalStack) -> None:
    app = create_app(IntakeSettings(**on_stack(stack, unique("nooidc"))))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as http:
            r = await http.get("/v1/session/oidc")
            assert r.status_code == 200 and r.json() == {"enabled": False}
            assert (await http.get("/v1/session/oidc/login")).status_code == 404
            assert (await http.get("/v1/session/oidc/callback?code=x&state=y")).status_code == 404


async def test_a_provider_that_does_not_answer_sends_back_with_the_reason(
    stack: LocalStack,
) -> None:
    settings = IntakeSettings(
        **on_stack(stack, unique("downoidc")),
        oidc_issuer=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        oidc_client_id="tongxin-console",
        oidc_client_secret="not-used",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as http:
            assert (await http.get("/v1/session/oidc")).json() == {"enabled": True}
            r = await http.get("/v1/session/oidc/login")
            assert r.status_code == 303
            assert r.headers["location"] == "/console/?oidc_error=oidc_unavailable"
            assert SESSION_COOKIE not in set_cookies(r)


async def test_no_secret_or_token_reaches_the_audit_or_the_log(oidc: Setup) -> None:
    authorize, flow = await start(oidc)
    back = await at_provider(oidc, authorize, "wang")
    code = parse_qs(urlsplit(back).query)["code"][0]
    r = await callback(oidc, back, flow)
    session = value(set_cookies(r)[SESSION_COOKIE])
    audit = await oidc.http.get("/v1/accounts/audit", headers=oidc.admin())
    text = audit.text + "\n".join(oidc.logs.lines)
    assert KNOWN in text and "identity provider" in text  # the records and lines are there …
    for secret in (oidc.provider.client_secret, code, flow, session):
        assert secret not in text  # … but no secret, code, flow or session token
