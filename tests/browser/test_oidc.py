"""Signing in to the console through the county's identity provider, in a real browser:
a real OpenID Provider (tests/oidc: the certified ``oidc-provider``, its built-in sign-in
page) on ``localhost`` — another site than the platform's 127.0.0.1 — and intake and
routing as processes configured for it. "通过统一身份认证登录" goes to the provider, and
back in the console as the matching account; someone without an account is told so in
zh-CN and is not signed in."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import DESKTOP, PHONE, ConsolePlatform
from tests.oidc import OpenIDProvider, openid_provider
from tests.support import unique
from tongxin.cli import SERVICES, start_services, stop_services, wait_ready
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import SESSION_COOKIE, Role

# the services run as processes (like tests/e2e): selected and deselected with them
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# what the console needs: intake (accounts, the console, its proxy) and routing (the queue)
NEEDED = ["intake", "routing"]
NAME = unique("oidc").lower()
NOBODY = unique("nobody").lower()
PEOPLE = {
    "wang": {"preferred_username": NAME, "name": "王芳"},
    "stranger": {"preferred_username": NOBODY, "name": "陌生人"},
}


@pytest.fixture(scope="module")
def oidc_platform(stack: LocalStack) -> Iterator[tuple[ConsolePlatform, OpenIDProvider]]:
    """The provider, and intake and routing configured to sign people in through it."""
    run = unique("oidcui")
    ports = {f"TONGXIN_{name.upper()}_PORT": str(free_port()) for name in SERVICES}
    intake = f"http://127.0.0.1:{ports['TONGXIN_INTAKE_PORT']}"
    with openid_provider(f"{intake}/v1/session/oidc/callback", PEOPLE) as provider:
        env = {
            **os.environ,
            **stack.service_env(),
            "TONGXIN_ENV": "test",
            "TONGXIN_TOPIC_PREFIX": f"{run}.",
            "TONGXIN_DB_PREFIX": f"{run}_",
            "TONGXIN_OUTBOX_POLL_INTERVAL_S": "0.2",
            **ports,
            **provider.settings(),
        }
        p = ConsolePlatform(env, Path(tempfile.mkdtemp(prefix=f"{run}-logs-")))
        p.procs.update(start_services(env, NEEDED, log_dir=p.log_dir))
        try:
            wait_ready(env, NEEDED, timeout=120)
            yield p, provider
        finally:
            stop_services(p.procs)


async def new_page(browser: Browser, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(
        viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    return await context.new_page()


async def shot(page: Page, artifacts: Path, name: str) -> None:
    path = artifacts / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, path


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_sign_in_through_the_identity_provider(
    browser: Browser,
    oidc_platform: tuple[ConsolePlatform, OpenIDProvider],
    artifacts: Path,
    viewport: dict[str, int],
) -> None:
    p, provider = oidc_platform
    kind = "phone" if viewport is PHONE else "desktop"
    async with httpx.AsyncClient(base_url=p.url("intake"), timeout=30) as http:
        r = await http.get("/v1/accounts", headers=p.headers(Role.ADMIN, None, "admin"))
        if NAME not in {a["name"] for a in r.json()}:
            r = await http.post(
                "/v1/accounts",
                headers=p.headers(Role.ADMIN, None, "admin"),
                json={
                    "name": NAME,
                    "display_name": "王芳",
                    "role": "staff",
                    "unit": "community:liyuan",
                    "password": f"Initial-{unique('pw')}",
                },
            )
            assert r.status_code == 201, r.text

    page = await new_page(browser, viewport)
    await page.goto(p.console)
    button = page.locator("#oidc-button")
    await expect(button).to_be_visible()
    await expect(button).to_have_text("通过统一身份认证登录")
    await shot(page, artifacts, f"oidc-{kind}-signin-page")

    await button.click()
    await page.wait_for_url(f"{provider.issuer}/interaction/**")
    await shot(page, artifacts, f"oidc-{kind}-provider")
    await page.fill("input[name=login]", "wang")
    await page.fill("input[name=password]", "any password")
    await page.click("button[type=submit]")

    # back in the console, signed in as the matching account: who, their unit, the queue
    await page.wait_for_url(f"{p.console}**")
    who = page.locator("#whoami")
    await expect(who).to_be_visible()
    await expect(who.locator(".unit")).to_have_text("梨园社区")
    await expect(who.locator(".role")).to_have_attribute("data-role", "staff")
    await expect(who.locator(".sub")).to_have_text(f"王芳（{NAME}）")
    await expect(page.locator("#view")).to_contain_text("即知即办")
    await expect(page.locator("#view .error")).to_have_count(0)
    await shot(page, artifacts, f"oidc-{kind}-signed-in")

    # the password sign-in's cookie: HttpOnly, SameSite=Strict, out of page scripts' reach
    cookies = {c["name"]: c for c in await page.context.cookies(p.url("intake"))}
    assert cookies[SESSION_COOKIE]["httpOnly"] is True
    assert cookies[SESSION_COOKIE]["sameSite"] == "Strict"
    assert SESSION_COOKIE not in await page.evaluate("document.cookie")
    # a reload keeps the session; signing out ends it
    await page.reload()
    await expect(who.locator(".unit")).to_have_text("梨园社区")
    await page.click("#signout")
    await expect(page.locator("#login-form")).to_be_visible()
    assert (await page.request.get(p.url("intake") + "/v1/session")).status == 401
    await page.context.close()


async def test_someone_without_an_account_is_told_so(
    browser: Browser, oidc_platform: tuple[ConsolePlatform, OpenIDProvider], artifacts: Path
) -> None:
    p, provider = oidc_platform
    page = await new_page(browser, PHONE)
    await page.goto(p.console)
    await page.click("#oidc-button")
    await page.wait_for_url(f"{provider.issuer}/interaction/**")
    await page.fill("input[name=login]", "stranger")
    await page.fill("input[name=password]", "any password")
    await page.click("button[type=submit]")

    await page.wait_for_url(f"{p.console}**")
    error = page.locator("#signin-error .error")
    await expect(error).to_have_attribute("data-code", "no_account")
    await expect(error).to_contain_text("没有对应账号，请联系管理员开通")
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#whoami")).to_be_hidden()
    assert "oidc_error" not in page.url  # the reason is shown once, not kept in the address
    cookies = {c["name"] for c in await page.context.cookies(p.url("intake"))}
    assert SESSION_COOKIE not in cookies
    await shot(page, artifacts, "oidc-phone-no-account")
    await page.context.close()
