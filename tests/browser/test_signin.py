"""Signing in to the console with a name and password, in a real browser (desktop and
phone): the first sign-in sets a new password, the session cookie is out of page scripts'
reach, the console works through it, five wrong passwords lock with Retry-After, and a
page on another origin posting with the cookie is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import DESKTOP, PHONE, ConsolePlatform
from tests.support import unique
from tongxin.devstack.procs import free_port
from tongxin.runtime.auth import SESSION_COOKIE, Role

# the four services run as processes (like tests/e2e): selected and deselected with them
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# every password typed here; the last test looks for them in the services' logs
PASSWORDS: list[str] = []


def secret(prefix: str) -> str:
    value = f"{prefix}-{unique('p')}"
    PASSWORDS.append(value)
    return value


async def create_account(p: ConsolePlatform, password: str, **fields: str | None) -> str:
    """A staff account made by an admin over the API (must change its password)."""
    name = unique("staff").lower()
    body = {"name": name, "display_name": "王芳", "role": "staff", "unit": "community:liyuan"}
    async with httpx.AsyncClient(base_url=p.url("intake"), timeout=30) as http:
        r = await http.post(
            "/v1/accounts",
            headers=p.headers(Role.ADMIN, None, "admin"),
            json={**body, **fields, "password": password},
        )
    assert r.status_code == 201, r.text
    return name


async def new_page(browser: Browser, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(
        viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    return await context.new_page()


async def sign_in(page: Page, p: ConsolePlatform, name: str, password: str) -> None:
    await page.goto(p.console)
    await page.fill("#login-name", name)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")


async def shot(page: Page, artifacts: Path, name: str) -> None:
    path = artifacts / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, path


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_staff_sign_in_with_a_password(
    browser: Browser, console_platform: ConsolePlatform, artifacts: Path, viewport: dict[str, int]
) -> None:
    p = console_platform
    kind = "phone" if viewport is PHONE else "desktop"
    first, chosen = secret("Initial"), secret("Chosen")
    name = await create_account(p, first)
    page = await new_page(browser, viewport)
    await sign_in(page, p, name, first)

    # the first sign-in asks for a new password before anything else
    await expect(page.locator("#password-form")).to_be_visible()
    await expect(page.locator("#nav")).to_be_hidden()
    await shot(page, artifacts, f"signin-{kind}-change-password")
    await page.fill("#pw-new", "1234567890")
    await page.fill("#pw-new2", "1234567890")
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#signin-error .error")).to_contain_text("数字")
    await page.fill("#pw-new", chosen)
    await page.fill("#pw-new2", chosen)
    await page.click("#password-form button[type=submit]")

    # signed in: who and their unit, and the queue through the proxy with the cookie
    who = page.locator("#whoami")
    await expect(who).to_be_visible()
    await expect(who.locator(".unit")).to_have_text("梨园社区")
    await expect(who.locator(".role")).to_have_attribute("data-role", "staff")
    await expect(who).to_contain_text(name)
    await expect(page.locator("#view")).to_contain_text("即知即办")
    await expect(page.locator("#view .error")).to_have_count(0)
    await shot(page, artifacts, f"signin-{kind}-signed-in")

    # the session cookie is there, but page scripts cannot read it
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies[SESSION_COOKIE]["httpOnly"] is True
    assert cookies[SESSION_COOKIE]["sameSite"] == "Strict"
    assert SESSION_COOKIE not in await page.evaluate("document.cookie")
    assert await page.evaluate("sessionStorage.length") == 0  # no token kept either

    # a reload keeps the session; signing out ends it
    await page.reload()
    await expect(who.locator(".unit")).to_have_text("梨园社区")
    await expect(who.locator(".sub")).to_have_text(f"王芳（{name}）")
    await page.click("#signout")
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#nav")).to_be_hidden()
    r = await page.request.get(p.url("intake") + "/v1/session")
    assert r.status == 401
    await page.context.close()


async def test_an_expired_session_asks_to_sign_in_again(
    browser: Browser, console_platform: ConsolePlatform, artifacts: Path
) -> None:
    p = console_platform
    first, chosen = secret("Initial"), secret("Chosen")
    name = await create_account(p, first)
    page = await new_page(browser, DESKTOP)
    await sign_in(page, p, name, first)
    await page.fill("#pw-new", chosen)
    await page.fill("#pw-new2", chosen)
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#whoami")).to_be_visible()
    # the session ends under the page (as an expired cookie would): the next call says so
    await page.context.clear_cookies()
    await page.click('#nav a[data-nav="kpi"]')
    error = page.locator("#signin-error .error")
    await expect(error).to_have_text("登录已过期，请重新登录。")
    await expect(page.locator("#login-form")).to_be_visible()
    await shot(page, artifacts, "signin-expired")
    await page.context.close()


async def test_five_wrong_passwords_lock_the_account(
    browser: Browser, console_platform: ConsolePlatform, artifacts: Path
) -> None:
    p = console_platform
    password = secret("Initial")
    name = await create_account(p, password)
    page = await new_page(browser, PHONE)
    await page.goto(p.console)
    error = page.locator("#signin-error .error")
    for i in range(5):
        await page.fill("#login-name", name)
        await page.fill("#login-password", secret(f"wrong-{i}"))
        async with page.expect_response(lambda r: r.url.endswith("/v1/session")) as answer:
            await page.click("#login-form button[type=submit]")
        response = await answer.value
        if i < 4:
            assert response.status == 401
            await expect(error).to_have_attribute("data-code", "bad_credentials")
    assert response.status == 429
    assert 0 < int(response.headers["retry-after"]) <= 900
    await expect(error).to_have_attribute("data-code", "locked")
    await expect(error).to_contain_text("分钟后再试")
    await shot(page, artifacts, "signin-phone-locked")
    # the right password does not help while locked
    await page.fill("#login-name", name)
    await page.fill("#login-password", password)
    async with page.expect_response(lambda r: r.url.endswith("/v1/session")) as answer:
        await page.click("#login-form button[type=submit]")
    assert (await answer.value).status == 429
    await expect(page.locator("#nav")).to_be_hidden()
    await page.context.close()


class _Attacker(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        page = (
            "<!doctype html><html><body>"
            f'<form id="evil" method="post" action="{self.target}" enctype="text/plain">'
            '<input name="x" value="y"><button type="submit">win a prize</button></form>'
            "</body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def attacker(console_platform: ConsolePlatform) -> Iterator[str]:
    """A page on another origin (another port of this host) whose form posts to the
    console's proxy: a write the signed-in browser would send with its cookie."""
    target = console_platform.url("intake") + "/console/api/routing/v1/cases/any/acknowledge"
    handler = type("Attacker", (_Attacker,), {"target": target})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_cross_site_post_with_the_cookie_is_refused(
    browser: Browser, console_platform: ConsolePlatform, attacker: str, artifacts: Path
) -> None:
    p = console_platform
    first, chosen = secret("Initial"), secret("Chosen")
    name = await create_account(p, first)
    page = await new_page(browser, DESKTOP)
    await sign_in(page, p, name, first)
    await page.fill("#pw-new", chosen)
    await page.fill("#pw-new2", chosen)
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#whoami")).to_be_visible()

    # another origin's page in the same browser posts to the proxy
    evil = await page.context.new_page()
    await evil.goto(attacker)
    async with evil.expect_response(lambda r: "/console/api/" in r.url) as answer:
        await evil.click("#evil button")
    response = await answer.value
    sent = await response.request.all_headers()
    # the browser did send the cookie (another port of the same host is the same site) …
    assert SESSION_COOKIE in sent.get("cookie", "")
    # … and the platform refused it before anything was forwarded
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "cross_site"
    await shot(evil, artifacts, "signin-cross-site-refused")
    await page.context.close()


async def test_no_password_or_hash_reaches_a_service_log(
    console_platform: ConsolePlatform,
) -> None:
    """Run last: the four services' own logs (as processes) after the sign-ins above."""
    logs = {p.name: p.read_text(encoding="utf-8") for p in console_platform.log_dir.glob("*.log")}
    assert "intake.log" in logs and "account signin" in logs["intake.log"]
    assert len(PASSWORDS) >= 10
    for name, text in logs.items():
        assert "$argon2" not in text, name
        for password in PASSWORDS:
            assert password not in text, f"a password in {name}'s log"
