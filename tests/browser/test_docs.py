"""``/docs`` (Swagger UI) and ``/redoc`` render in Chromium with every request to another
host blocked, as on an intranet without the public internet: their scripts, styles and icons
come from the service itself, and their CSP lets them run."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from importlib import import_module
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.async_api import Browser, ConsoleMessage, Page, Response, Route, expect

from tongxin.cli import SERVICES
from tongxin.devstack.procs import free_port, port_open, wait_until


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    """The four apps served by uvicorn in this process, each on its own port: the docs need
    no broker or database, so the lifespan (which connects to them) is off."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    urls: dict[str, str] = {}
    try:
        for name in SERVICES:
            port = free_port()
            app = import_module(f"services.{name}.app").create_app()
            config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off")
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name=f"docs-{name}", daemon=True)
            thread.start()
            servers.append((server, thread))
            wait_until(lambda p=port: port_open(p), 30, f"{name} docs", None)
            urls[name] = f"http://127.0.0.1:{port}"
        yield urls
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(10)


async def offline_page(browser: Browser, base: str) -> tuple[Page, list[str], list[str]]:
    """A tab that reaches only ``base``'s host: any other request is aborted and listed;
    script errors and CSP refusals are listed too, and so are the service's own answers
    over 400 (but ReDoc's attribution logo, which it asks for relative to the page and no
    package ships)."""
    own = urlsplit(base).netloc
    blocked: list[str] = []
    errors: list[str] = []
    context = await browser.new_context()

    async def only_own_host(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in {"data", "blob"} or urlsplit(url).netloc == own:
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort("blockedbyclient")

    await context.route("**/*", only_own_host)
    page = await context.new_page()

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    def on_response(response: Response) -> None:
        if response.status >= 400 and not response.url.endswith("/logo-mini.svg"):
            errors.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, blocked, errors


@pytest.fixture
async def tabs(browser: Browser) -> AsyncIterator[list[Page]]:
    opened: list[Page] = []
    yield opened
    for page in opened:
        await page.context.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_swagger_ui_renders_with_other_hosts_blocked(
    browser: Browser, services: dict[str, str], tabs: list[Page], service: str
) -> None:
    page, blocked, errors = await offline_page(browser, services[service])
    tabs.append(page)
    await page.goto(services[service] + "/docs")
    # the operations list: one block per route of the service's OpenAPI
    await expect(page.locator(".opblock").first).to_be_visible()
    assert await page.locator(".opblock").count() > 0
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tongxin")
    assert blocked == []
    assert errors == []


async def test_redoc_renders_with_other_hosts_blocked(
    browser: Browser, services: dict[str, str], tabs: list[Page]
) -> None:
    page, blocked, errors = await offline_page(browser, services["intake"])
    tabs.append(page)
    await page.goto(services["intake"] + "/redoc")
    # ReDoc's side menu lists the operations once it has read /openapi.json
    await expect(page.locator("[role=menuitem]").first).to_be_visible()
    assert await page.locator("[role=menuitem]").count() > 0
    await expect(page.locator(".api-info h1")).to_contain_text("Tongxin")
    assert blocked == []
    assert errors == []
