"""Browser tests of the staff console: the four services as processes on the session stack,
driven through Debian's Chromium by Playwright (its own browser download is not used)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support import WebhookSink, unique
from tongxin.cli import SERVICES, start_services, stop_services, wait_ready
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.settings import PLACEHOLDER_SECRET, REPO_ROOT

CHROMIUM = os.environ.get("TONGXIN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "var" / "artifacts" / "browser"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

# every wait is a condition (Playwright's expect polls); this bounds each one
expect.set_options(timeout=20_000)


@dataclass
class ConsolePlatform:
    """The running services, their environment and tokens for the people who sign in."""

    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.env[f'TONGXIN_{name.upper()}_PORT']}"

    @property
    def console(self) -> str:
        return self.url("intake") + "/console/"

    def token(self, role: Role, unit: str | None, sub: str) -> str:
        secret = self.env.get("TONGXIN_JWT_SECRET") or PLACEHOLDER_SECRET
        return mint_token(secret, sub=sub, role=role, unit=unit)

    def headers(self, role: Role, unit: str | None, sub: str = "test") -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(role, unit, sub)}"}


@pytest.fixture(scope="module")
def console_platform(stack: LocalStack) -> Iterator[ConsolePlatform]:
    """The platform with deadlines at 1/50 (a special case's 30 min: 36 s; a major
    case's report-in: 144 s) and care visits overdue 2 s after they fall due."""
    sink = WebhookSink().start()
    run = unique("ui")
    env = {
        **os.environ,
        **stack.service_env(),
        "TONGXIN_ENV": "test",
        "TONGXIN_TOPIC_PREFIX": f"{run}.",
        "TONGXIN_DB_PREFIX": f"{run}_",
        "TONGXIN_NOTIFY_WEBHOOK_URL": sink.url,
        "TONGXIN_DEADLINE_SCALE": "0.02",
        "TONGXIN_CARE_VISIT_WINDOW_S": "100",
        "TONGXIN_OUTBOX_POLL_INTERVAL_S": "0.2",
        # intake's console proxy finds routing and volunteer by these same ports
        **{f"TONGXIN_{name.upper()}_PORT": str(free_port()) for name in SERVICES},
    }
    p = ConsolePlatform(env, Path(tempfile.mkdtemp(prefix=f"{run}-logs-")))
    p.procs.update(start_services(env, list(SERVICES), log_dir=p.log_dir))
    try:
        wait_ready(env, list(SERVICES), timeout=120)
        yield p
    finally:
        stop_services(p.procs)
        sink.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (gitignored); emptied once per run."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    print(f"\n[tongxin] browser screenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (make test installs it: tools/ci/system-deps.sh)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium)
        try:
            yield b
        finally:
            await b.close()


async def open_console(
    browser: Browser, platform: ConsolePlatform, token: str, viewport: dict[str, int] = DESKTOP
) -> Page:
    """A fresh tab (own sessionStorage) signed in by pasting ``token``."""
    context = await browser.new_context(
        viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    page = await context.new_page()
    await page.goto(platform.console)
    await page.fill("#token", token)
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#whoami")).to_be_visible()
    return page
