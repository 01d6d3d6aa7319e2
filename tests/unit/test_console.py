"""The console's static pages and its same-origin proxy (upstreams faked at the transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from services.intake.config import IntakeSettings
from tongxin import console
from tongxin.runtime.auth import Role, install_verifier, mint_token
from tongxin.runtime.errors import install_error_handlers

SETTINGS = IntakeSettings(env="test", routing_port=18002, volunteer_port=18003)
seen: list[httpx.Request] = []


def upstream(request: httpx.Request) -> httpx.Response:
    """Routing/volunteer as the proxy sees them; some paths fail like a dead service."""
    seen.append(request)
    if request.url.path == "/v1/down":
        raise httpx.ConnectError("connection refused", request=request)
    if request.url.path == "/v1/slow":
        raise httpx.ReadTimeout("timed out", request=request)
    if request.url.path == "/v1/cases/C-1/return":
        err = {"code": "invalid_transition", "message": "no", "details": {"allowed": []}}
        return httpx.Response(409, json={"error": err})
    return httpx.Response(
        200,
        json={"echo": request.url.path, "query": request.url.query.decode()},
        headers={"x-next-cursor": "abc", "set-cookie": "x=1", "server": "upstream"},
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    install_verifier(app, SETTINGS)
    app.include_router(console.router)
    proxy = console.ConsoleProxy(
        SETTINGS.console_upstreams(), 1.0, transport=httpx.MockTransport(upstream)
    )
    app.state.rt = SimpleNamespace(settings=SETTINGS, extra={"console_proxy": proxy})
    seen.clear()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as client:
        yield client
    await proxy.aclose()


def bearer(role: Role = Role.DEPARTMENT, unit: str | None = "dept:housing") -> dict[str, str]:
    token = mint_token(SETTINGS.jwt_secret, sub="u1", role=role, unit=unit)
    return {"authorization": f"Bearer {token}"}


def test_upstreams_follow_the_service_ports_unless_urls_are_set() -> None:
    assert SETTINGS.console_upstreams() == {
        "routing": "http://127.0.0.1:18002",
        "volunteer": "http://127.0.0.1:18003",
    }
    moved = IntakeSettings(env="test", console_routing_url="http://routing:8002")
    assert moved.console_upstreams()["routing"] == "http://routing:8002"


async def test_page_and_assets_are_served_with_a_strict_policy(http: httpx.AsyncClient) -> None:
    r = await http.get("/console")
    assert r.status_code == 308 and r.headers["location"] == "/console/"
    page = await http.get("/console/")
    assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = await http.get("/console/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    for bad in ("/console/static/index.py", "/console/static/..%2F__init__.py"):
        r = await http.get(bad)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_me_verifies_the_token(http: httpx.AsyncClient) -> None:
    r = await http.get("/console/api/me")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await http.get("/console/api/me", headers={"authorization": "Bearer nonsense"})
    assert r.status_code == 401
    r = await http.get("/console/api/me", headers=bearer())
    assert r.json() == {"sub": "u1", "role": "department", "unit": "dept:housing"}


async def test_proxy_forwards_the_callers_token_query_and_body(http: httpx.AsyncClient) -> None:
    auth = bearer()
    r = await http.get("/console/api/routing/v1/cases?tier=major&limit=5", headers=auth)
    assert r.status_code == 200
    assert r.json() == {"echo": "/v1/cases", "query": "tier=major&limit=5"}
    # only the headers the console needs come back; upstream cookies do not
    assert r.headers["x-next-cursor"] == "abc" and "set-cookie" not in r.headers
    sent = seen[-1]
    assert str(sent.url).startswith("http://127.0.0.1:18002/v1/cases")
    assert sent.headers["authorization"] == auth["authorization"]
    r = await http.post(
        "/console/api/volunteer/v1/tasks/T-1/complete", headers=auth, json={"hours": 1}
    )
    assert r.status_code == 200 and seen[-1].url.host == "127.0.0.1"
    assert seen[-1].url.port == 18003 and seen[-1].content == b'{"hours":1}'
    # upstream errors pass through unchanged (the SPEC shape)
    r = await http.post("/console/api/routing/v1/cases/C-1/return", headers=auth, json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"


async def test_proxy_refuses_other_paths_and_services(http: httpx.AsyncClient) -> None:
    n = len(seen)
    for path in (
        "/console/api/notify/v1/rules",
        "/console/api/routing/metrics",
        "/console/api/routing/v1/../metrics",
    ):
        r = await http.get(path, headers=bearer())
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    assert len(seen) == n  # nothing reached an upstream


async def test_upstream_failures_answer_in_the_spec_shape(http: httpx.AsyncClient) -> None:
    r = await http.get("/console/api/routing/v1/down", headers=bearer())
    assert r.status_code == 502
    assert r.json()["error"] == {
        "code": "upstream_unavailable",
        "message": "The routing service is unavailable; try again shortly.",
        "details": {"service": "routing"},
    }
    r = await http.get("/console/api/volunteer/v1/slow", headers=bearer())
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
