"""``/docs`` and ``/redoc`` of every service need nothing from another host: the pages name
only the service's own paths, those paths answer, and the pages' CSP allows no other origin
(tests/browser/test_docs.py renders them in Chromium with other hosts blocked)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import import_module

import httpx
import pytest
from fastapi import FastAPI

from tongxin.cli import SERVICES
from tongxin.runtime.openapi import DOCS_ASSETS

# a URL with a host: scheme-relative ("//host") or absolute ("http(s)://host")
EXTERNAL = re.compile(r"(?:https?:)?//[\w.-]+", re.I)
# what a page loads: <script src>, <link href>, <redoc spec-url>, Swagger UI's `url: '…'`
REFERENCES = re.compile(r"""(?:\bsrc|\bhref|spec-url)=["']([^"']+)["']|\burl: ?'([^']+)'""")


def create(service: str) -> FastAPI:
    app: FastAPI = import_module(f"services.{service}.app").create_app()
    return app


@pytest.fixture(params=SERVICES)
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    # the docs need no broker or database: the lifespan is not run
    transport = httpx.ASGITransport(app=create(request.param))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_reference_only_the_service_itself(
    http: httpx.AsyncClient, page: str
) -> None:
    r = await http.get(page)
    assert r.status_code == 200
    html = r.text
    assert not EXTERNAL.findall(html), EXTERNAL.findall(html)
    refs = [a or b for a, b in REFERENCES.findall(html)]
    assets = [u for u in refs if u.startswith(f"{DOCS_ASSETS}/")]
    assert len(assets) >= 2, refs  # the script and the favicon at least
    assert "/openapi.json" in refs
    for url in refs:
        assert url.startswith("/"), url
        got = await http.get(url)
        assert got.status_code == 200, url
        assert got.content, url


async def test_swagger_ui_loads_its_script_and_styles_from_the_service(
    http: httpx.AsyncClient,
) -> None:
    html = (await http.get("/docs")).text
    js = re.search(r'<script src="([^"]+)"', html)
    css = re.search(r'<link type="text/css" rel="stylesheet" href="([^"]+)"', html)
    assert js and css
    script = await http.get(js.group(1))
    assert script.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in script.content
    styles = await http.get(css.group(1))
    assert styles.headers["content-type"].startswith("text/css")
    assert b".swagger-ui" in styles.content


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_docs_pages_allow_no_other_origin(http: httpx.AsyncClient, page: str) -> None:
    r = await http.get(page)
    csp = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    for directive, sources in csp.items():
        for source in sources.split():
            assert source.startswith("'") or source in {"data:", "blob:"}, (directive, source)
    inline = re.findall(r"<script>", r.text)
    # each inline script (Swagger UI's set-up) is allowed by its hash, nothing else inline
    assert csp["script-src"].count("'sha256-") == len(inline)
    assert "'unsafe-inline'" not in csp["script-src"]
    assert r.headers["x-content-type-options"] == "nosniff"
