"""The resident page's static files and its QR endpoint (no broker, no database: the page
is static and the QR code is drawn from the query alone)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from tongxin import resident
from tongxin.resident import QR_MAX_CHARS, tracking_link_problem
from tongxin.runtime.errors import install_error_handlers

HOST = "intake.example:8001"
LINK = f"http://{HOST}/r/#/track?id=YS-20261207-000042&code=AbC_dEf-123456789012"
# a URL with a host: scheme-relative ("//host") or absolute ("http(s)://host")
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+", re.I)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(resident.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
        yield client


async def test_page_and_assets_are_served_with_a_strict_policy(http: httpx.AsyncClient) -> None:
    r = await http.get("/r")
    assert r.status_code == 308 and r.headers["location"] == "/r/"
    page = await http.get("/r/")
    assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert page.headers["permissions-policy"].startswith("geolocation=(self)")
    assert page.headers["x-content-type-options"] == "nosniff"
    # no inline script and no inline event handler: the CSP would refuse them
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert not re.search(r"\son[a-z]+\s*=", page.text)
    assert not EXTERNAL.search(page.text), EXTERNAL.search(page.text)
    for name, media in resident.ASSETS.items():
        asset = await http.get(f"/r/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"] == media
        assert not EXTERNAL.search(asset.text), (name, EXTERNAL.search(asset.text))
    for bad in ("/r/static/index.html", "/r/static/..%2F__init__.py", "/r/static/x.js"):
        r = await http.get(bad)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_qr_code_of_a_tracking_link_is_an_svg(http: httpx.AsyncClient) -> None:
    r = await http.get("/r/qr.svg", params={"data": LINK})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/svg+xml"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert r.text.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in r.text
    assert "<script" not in r.text
    # the same link over https (behind a TLS proxy that keeps the Host) is drawn too
    secure = LINK.replace("http://", "https://")
    assert (await http.get("/r/qr.svg", params={"data": secure})).status_code == 200


@pytest.mark.parametrize(
    "data",
    [
        "",  # nothing
        "hello",  # not a link
        LINK.replace(HOST, "evil.example"),  # another host
        LINK.replace(HOST, f"{HOST}@evil.example"),  # credentials trick
        LINK.replace("http://", "javascript://"),  # another scheme
        LINK.replace("/r/#", "/console/#"),  # another page
        LINK.replace("/r/#", "/r/?x=1#"),  # a query
        LINK.replace("#/track", "#/elsewhere"),  # another view
        LINK + "&next=http://evil.example",  # more than id and code
        LINK.replace("YS-20261207-000042", "not-an-id"),
        LINK.replace("code=AbC_dEf-123456789012", "code=" + "a" * (QR_MAX_CHARS)),  # too long
        "x" * (QR_MAX_CHARS * 2 + 1),  # longer than the query parameter may be
    ],
)
async def test_qr_refuses_anything_but_this_pages_tracking_links(
    http: httpx.AsyncClient, data: str
) -> None:
    r = await http.get(f"/r/qr.svg?data={quote(data, safe='')}")
    assert r.status_code == 422, (data, r.status_code, r.text[:200])
    body = r.json()["error"]
    assert body["code"] == "validation_error"
    assert body["details"][0]["loc"] == ["query", "data"]
    assert "svg" not in r.headers["content-type"]


def test_tracking_link_rules() -> None:
    assert tracking_link_problem(LINK, HOST) is None
    assert tracking_link_problem(LINK, None) == "only a link to this page on this host"
    assert tracking_link_problem(LINK, "other:8001") == "only a link to this page on this host"
    too_long = "http://h/" + "a" * QR_MAX_CHARS
    assert tracking_link_problem(too_long, "h") == f"at most {QR_MAX_CHARS} characters"
