"""The volunteer page's static files and their headers (no broker, no database: the page is
static; it signs in and reaches the volunteer service through routes mounted elsewhere)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tongxin import volunteer_page
from tongxin.runtime.errors import install_error_handlers

# a URL with a host: scheme-relative ("//host") or absolute ("http(s)://host")
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+", re.I)
# what the script may call: the accounts' session, the public catalogue, the console proxy
CALLS = re.compile(r"""(?:"|`)(/[^"`$]*)""")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(volunteer_page.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake.example") as client:
        yield client


async def test_page_and_assets_are_served_with_a_strict_policy(http: httpx.AsyncClient) -> None:
    r = await http.get("/v")
    assert r.status_code == 308 and r.headers["location"] == "/v/"
    page = await http.get("/v/")
    assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["permissions-policy"].startswith("geolocation=()")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # no inline script, style or event handler: the CSP would refuse them
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert "<style" not in page.text and not re.search(r"\sstyle\s*=", page.text)
    assert not re.search(r"\son[a-z]+\s*=", page.text)
    assert not EXTERNAL.search(page.text), EXTERNAL.search(page.text)
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert src.startswith("/v/static/"), src
    for name, media in volunteer_page.ASSETS.items():
        asset = await http.get(f"/v/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"] == media
        assert asset.headers["content-security-policy"] == csp
        assert not EXTERNAL.search(asset.text), (name, EXTERNAL.search(asset.text))
    for bad in ("/v/static/index.html", "/v/static/..%2F__init__.py", "/v/static/x.js"):
        r = await http.get(bad)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_the_script_runs_nothing_built_from_strings_and_calls_only_this_origin(
    http: httpx.AsyncClient,
) -> None:
    script = (await http.get("/v/static/volunteer.js")).text
    # nothing the CSP forbids, and no HTML parsed from strings (text only: no injection)
    for banned in ("eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML"):
        assert banned not in script, banned
    assert "document.write" not in script and "localStorage" not in script
    # it reaches the volunteer service only through the console's same-origin proxy, and
    # writes carry the session's CSRF token
    assert '"/console/api/volunteer"' in script
    assert '"x-csrf-token"' in script
    paths = {p for p in CALLS.findall(script) if p.startswith("/v1") or p.startswith("/console")}
    assert paths >= {"/v1/session", "/v1/session/password", "/console/api/volunteer"}
    assert all(p.startswith(("/v1/", "/v1", "/console/")) for p in paths), paths
