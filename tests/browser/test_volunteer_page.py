"""The volunteer page in a real browser, on a phone: a red-vest volunteer with an account
signs in (setting a new password first), sees the offers residents' needs produced with
their accept-by countdown, declines one with a reason, accepts the other and completes it
with hours and a note; staff then see those hours through the volunteer API. The care
visit assigned to them is on the page too; a session that ends shows "登录已过期，请重新登录";
every request the page makes stays on its own origin."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import DESKTOP, PHONE, ConsolePlatform
from tests.support import eventually, unique
from tongxin.cli import start_services, stop_services, wait_ready
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import SESSION_COOKIE, Role

# the services run as processes (like tests/e2e): selected and deselected with them
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

# intake serves the page and proxies to volunteer; routing routes the resident's need
SERVICES = ["intake", "routing", "volunteer"]
COMMUNITY = "community:liyuan"
COMPOUND = "compound:jinyuan"
# the seeded elder-care volunteers, set aside so the offers go to the one registered here
SEEDED_ELDER_CARE = ["vol:001", "vol:006"]
ALL_WEEK = [{"day": d, "start": "00:00", "end": "23:59"} for d in range(7)]


def need(title: str, description: str) -> dict[str, Any]:
    """An elder-care request (its category needs the skill elder_care), as a grid worker
    raises it for a resident."""
    return {
        "channel": "grid_worker",
        "category": "elderly_care",
        "title": title,
        "description": description,
        "community": COMMUNITY,
        "compound": COMPOUND,
        "submitter": {"name": "李建华", "phone": "13987654321"},
    }


@pytest.fixture(scope="module")
def volunteer_platform(stack: LocalStack) -> Iterator[ConsolePlatform]:
    """Intake, routing and volunteer on the session stack at real time (the accept window is
    30 minutes: the countdown runs, and nothing expires while the test acts)."""
    run = unique("vp")
    env = {
        **os.environ,
        **stack.service_env(),
        "TONGXIN_ENV": "test",
        "TONGXIN_TOPIC_PREFIX": f"{run}.",
        "TONGXIN_DB_PREFIX": f"{run}_",
        "TONGXIN_OUTBOX_POLL_INTERVAL_S": "0.2",
        **{f"TONGXIN_{name.upper()}_PORT": str(free_port()) for name in SERVICES},
    }
    p = ConsolePlatform(env, Path(tempfile.mkdtemp(prefix=f"{run}-logs-")))
    p.procs.update(start_services(env, SERVICES, log_dir=p.log_dir))
    try:
        wait_ready(env, SERVICES, timeout=120)
        yield p
    finally:
        stop_services(p.procs)


async def shot(page: Page, artifacts: Path, name: str) -> None:
    path = artifacts / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, path


async def test_a_volunteer_answers_offers_and_completes_one_with_hours(
    browser: Browser, volunteer_platform: ConsolePlatform, artifacts: Path
) -> None:
    p = volunteer_platform
    staff = p.headers(Role.STAFF, COMMUNITY, "staff:vp")
    vid = f"vol:{unique('p').lower()}"
    login = unique("hong").lower()
    first, chosen = f"Initial-{unique('pw')}", f"Chosen-{unique('pw')}"

    # her account first, answering as her volunteer id: registered first, intake's
    # accounts would make her one of their own (vol-…), and this one would be refused
    async with httpx.AsyncClient(base_url=p.url("intake"), timeout=30) as intake:
        r = await intake.post(
            "/v1/accounts",
            headers=p.headers(Role.ADMIN, None, "admin"),
            json={
                "name": login,
                "display_name": "赵红梅",
                "role": "volunteer",
                "subject": vid,
                "password": first,
            },
        )
        assert r.status_code == 201, r.text

    async with httpx.AsyncClient(base_url=p.url("volunteer"), timeout=30) as vol:
        for seeded in SEEDED_ELDER_CARE:
            r = await vol.delete(f"/v1/volunteers/{seeded}", headers=staff)
            assert r.status_code == 200, r.text
        r = await vol.post(
            "/v1/volunteers",
            headers=staff,
            json={
                "id": vid,
                "name": "赵红梅",
                "phone": "13800138000",
                "skills": ["elder_care"],
                "community": COMMUNITY,
                "compound": COMPOUND,
                "availability": ALL_WEEK,
                "max_tasks": 3,
            },
        )
        assert r.status_code == 201, r.text
        # a special-care resident whose visits are hers: the first falls due at once
        r = await vol.post(
            "/v1/care-recipients",
            headers=staff,
            json={
                "name": "孙秀英",
                "care_type": "elderly_alone",
                "community": COMMUNITY,
                "compound": COMPOUND,
                "cadence_days": 7,
                "assigned_volunteers": [vid],
                "consent": True,
            },
        )
        assert r.status_code == 201, r.text
        recipient = r.json()["id"]

    async with httpx.AsyncClient(base_url=p.url("intake"), timeout=30) as intake:
        requests = []
        for title, text in (
            ("独居老人助餐", "6栋独居老人行动不便，需要志愿者每天中午帮忙送餐。"),
            ("老人陪同就医", "3栋王大爷下周二要去县医院复查，子女在外地，需要有人陪同。"),
        ):
            r = await intake.post("/v1/requests", json=need(title, text))
            assert r.status_code == 201, r.text
            requests.append(r.json()["id"])

    async with httpx.AsyncClient(base_url=p.url("volunteer"), timeout=30) as vol:

        async def offered_to_her() -> list[dict[str, Any]] | None:
            tasks = []
            for rid in requests:
                found = (
                    await vol.get("/v1/tasks", params={"request_id": rid}, headers=staff)
                ).json()
                if not found or found[0]["status"] != "offered":
                    return None
                tasks.append(found[0])
            return tasks

        tasks = await eventually(offered_to_her, timeout=60, what="both needs offered to her")
        assert {t["volunteer_id"] for t in tasks} == {vid}

        async def her_visit() -> list[dict[str, Any]]:
            visits = (await vol.get("/v1/care-visits", headers=staff)).json()
            return [v for v in visits if vid in v["assigned_volunteers"]]

        await eventually(her_visit, timeout=30, what="her care visit falls due")

    declined, accepted = tasks
    context = await browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai")
    origins: list[str] = []
    context.on("request", lambda req: origins.append(req.url))
    page = await context.new_page()
    # the script's own failures, and anything the CSP refused (a 4xx answer is logged too:
    # the wrong password's 401, the removed cookie's; those are expected)
    failures: list[str] = []
    page.on("pageerror", lambda exc: failures.append(f"uncaught: {exc}"))
    page.on(
        "console",
        lambda msg: (
            failures.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    await page.goto(p.url("intake") + "/v")
    assert page.url == p.url("intake") + "/v/"

    # sign in: the first password must be changed before anything else
    await page.fill("#login-name", login)
    await page.fill("#login-password", "wrong-password-1")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#signin-message .error")).to_have_text("用户名或密码错误。")
    await page.fill("#login-password", first)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#password-form")).to_be_visible()
    await expect(page.locator("#home-view")).to_be_hidden()
    await page.fill("#pw-new", chosen)
    await page.fill("#pw-new2", chosen)
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#whoami")).to_have_text("赵红梅")

    # her two offers, each with its countdown to the accept-by time
    offers = page.locator("#offers .card")
    await expect(offers).to_have_count(2)
    for task in tasks:
        card = page.locator(f'#offers .card[data-task="{task["id"]}"]')
        await expect(card.locator(".request-id")).to_have_text(task["request_id"])
        await expect(card.locator(".countdown")).to_contain_text("内回应")
        await expect(card).to_contain_text("助老")
    # the care visit assigned to her, her squad and (no) hours yet
    await expect(page.locator("#visits .card")).to_have_count(1)
    await expect(page.locator("#visits .card .visit-status")).to_have_text("待走访")
    await expect(page.locator("#squads")).to_contain_text("助老")
    await expect(page.locator("#total-hours")).to_have_text("0 小时")
    await shot(page, artifacts, "volunteer-phone-offers")

    # the session cookie is out of page scripts' reach
    cookies = {c["name"]: c for c in await context.cookies()}
    assert cookies[SESSION_COOKIE]["httpOnly"] is True
    assert SESSION_COOKIE not in await page.evaluate("document.cookie")

    # the countdown: orange in its last 5 minutes, and at zero the offer cannot be answered
    # (a second tab on the same session, whose clock is moved on; the services' is not)
    later = await browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai")
    await later.add_cookies(await context.cookies())
    await later.clock.install()
    tab = await later.new_page()
    await tab.goto(p.url("intake") + "/v/")
    countdown = tab.locator(f'#offers .card[data-task="{accepted["id"]}"] .countdown')
    await expect(countdown).to_contain_text("内回应")
    await expect(countdown).not_to_have_class(re.compile(r"\bsoon\b"))
    await tab.clock.fast_forward("26:00")
    await expect(countdown).to_have_class(re.compile(r"\bsoon\b"))
    await tab.clock.fast_forward("05:00")
    await expect(countdown).to_contain_text("已过接受截止时间")
    await expect(tab.locator("#offers .card button:disabled")).to_have_count(6)
    await later.close()

    # decline one with a reason
    card = page.locator(f'#offers .card[data-task="{declined["id"]}"]')
    await card.locator("button.decline").click()
    await card.locator("textarea.reason").fill("这周在外地照顾孙子")
    await card.locator("button.confirm-decline").click()
    await expect(page.locator("#home-message .ok")).to_contain_text("已婉拒")
    await expect(offers).to_have_count(1)

    # accept the other, then complete it with hours and a note
    await page.locator(f'#offers .card[data-task="{accepted["id"]}"] button.accept').click()
    await expect(page.locator("#home-message .ok")).to_contain_text("已接受")
    await expect(offers).to_have_count(0)
    done = page.locator(f'#accepted .card[data-task="{accepted["id"]}"]')
    await expect(done).to_be_visible()
    await shot(page, artifacts, "volunteer-phone-accepted")
    await done.locator("input.hours").fill("0")
    await done.locator("button.complete").click()
    await expect(done.locator(".card-message .error")).to_contain_text("不超过 24 小时")
    await done.locator("input.hours").fill("2.5")
    await done.locator("textarea.note").fill("陪王大爷到县医院复查，已送回家。")
    await done.locator("button.complete").click()
    await expect(page.locator("#home-message .ok")).to_contain_text("2.5 小时")
    await expect(page.locator("#accepted .card")).to_have_count(0)
    await expect(page.locator("#total-hours")).to_have_text("2.5 小时")
    await expect(page.locator(f'#done .card[data-task="{accepted["id"]}"]')).to_be_visible()
    await shot(page, artifacts, "volunteer-phone-completed")

    # staff see her hours and both answers through the volunteer API
    async with httpx.AsyncClient(base_url=p.url("volunteer"), timeout=30) as vol:
        hours = (await vol.get(f"/v1/volunteers/{vid}/hours", headers=staff)).json()
        assert hours["total_hours"] == 2.5 and hours["completed"] == 1
        assert hours["by_skill"] == {"elder_care": 2.5}
        [entry] = hours["entries"]
        assert entry["id"] == accepted["id"] and entry["note"] == "陪王大爷到县医院复查，已送回家。"
        task = (await vol.get(f"/v1/tasks/{declined['id']}", headers=staff)).json()
        mine = [o for o in task["offers"] if o["volunteer_id"] == vid]
        assert mine[0]["outcome"] == "declined", mine
        assert mine[0]["reason"] == "这周在外地照顾孙子"

    # the care visit made: recorded with its hours, and gone from what is due
    visit = page.locator("#visits .card")
    await visit.locator("input.hours").fill("1")
    await visit.locator("textarea.note").fill("老人精神好，冰箱里菜不多，下次带些。")
    await visit.locator("button.record").click()
    await expect(page.locator("#home-message .ok")).to_contain_text("走访已登记")
    await expect(page.locator("#visits .card")).to_have_count(0)
    await expect(page.locator("#total-hours")).to_have_text("3.5 小时")
    await expect(page.locator("#hours")).not_to_contain_text("null")
    async with httpx.AsyncClient(base_url=p.url("volunteer"), timeout=30) as vol:
        r = await vol.get(f"/v1/care-recipients/{recipient}/visits", headers=staff)
        [made] = [v for v in r.json() if v["status"] == "completed"]
        assert made["visited_by"] == vid and made["hours"] == 1
        assert made["note"] == "老人精神好，冰箱里菜不多，下次带些。"
    await page.set_viewport_size(DESKTOP)
    await shot(page, artifacts, "volunteer-desktop")
    await page.set_viewport_size(PHONE)

    # every request stayed on the page's own origin, and nothing failed in the page
    assert origins and all(u.startswith(p.url("intake") + "/") for u in origins), origins
    assert not failures, failures

    # a session that ends (here: the cookie is gone) shows "please sign in again"
    await context.clear_cookies()
    await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    await expect(page.locator("#signin-message .error")).to_have_text("登录已过期，请重新登录。")
    await expect(page.locator("#home-view")).to_be_hidden()

    # signing in again with the chosen password lands on the page; signing out ends it
    await page.fill("#login-name", login)
    await page.fill("#login-password", chosen)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#total-hours")).to_have_text("3.5 小时")
    await page.click("#signout")
    await expect(page.locator("#login-form")).to_be_visible()
    r = await page.request.get(p.url("intake") + "/v1/session")
    assert r.status == 401
    assert not failures, failures
    await context.close()


async def test_a_locked_account_and_a_staff_account_are_told_in_words(
    browser: Browser, volunteer_platform: ConsolePlatform, artifacts: Path
) -> None:
    p = volunteer_platform
    admin = p.headers(Role.ADMIN, None, "admin")
    volunteer, staff = unique("lock").lower(), unique("staff").lower()
    first = f"Initial-{unique('pw')}"
    async with httpx.AsyncClient(base_url=p.url("intake"), timeout=30) as intake:
        for name, extra in (
            (volunteer, {"role": "volunteer", "subject": f"vol:{volunteer}"}),
            (staff, {"role": "staff", "unit": COMMUNITY}),
        ):
            r = await intake.post(
                "/v1/accounts", headers=admin, json={"name": name, "password": first, **extra}
            )
            assert r.status_code == 201, r.text
    context = await browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai")
    page = await context.new_page()
    await page.goto(p.url("intake") + "/v/")
    message = page.locator("#signin-message .error")

    # five wrong passwords lock the name: the page says for how long (Retry-After)
    for i in range(5):
        await page.fill("#login-name", volunteer)
        await page.fill("#login-password", f"wrong-password-{i}")
        async with page.expect_response(lambda r: r.url.endswith("/v1/session")) as answer:
            await page.click("#login-form button[type=submit]")
        status = (await answer.value).status
        if i < 4:
            assert status == 401
            await expect(message).to_have_text("用户名或密码错误。")
    assert status == 429
    await expect(message).to_have_text(re.compile(r"^尝试次数过多，请 \d+ 分钟后再试。$"))
    await expect(page.locator("#home-view")).to_be_hidden()
    await shot(page, artifacts, "volunteer-phone-locked")

    # a staff account signs in (its new password first) and is sent to the console
    await page.fill("#login-name", staff)
    await page.fill("#login-password", first)
    await page.click("#login-form button[type=submit]")
    chosen = f"Chosen-{unique('pw')}"
    await page.fill("#pw-new", chosen)
    await page.fill("#pw-new2", chosen)
    await page.click("#password-form button[type=submit]")
    await expect(message).to_have_attribute("data-code", "not_volunteer")
    await expect(message).to_contain_text("/console/")
    await expect(page.locator("#home-view")).to_be_hidden()
    await page.click("#signout")
    await expect(page.locator("#signin-message .notice")).to_have_text("已退出登录。")
    await context.close()
