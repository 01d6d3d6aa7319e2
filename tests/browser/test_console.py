"""The staff console in a real browser: town staff whistle a major case, departments report in,
progress and resolve it through the UI; the whistle board, volunteers and KPI charts show
what the APIs hold; the queue highlights what is overdue; the layout works on a phone."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import PHONE, ConsolePlatform, open_console
from tests.support import eventually
from tongxin.runtime.auth import Role

# the four services run as processes (like tests/e2e): selected and deselected with them
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

TOWN = "town:yongbei"
HOUSING = "dept:housing"
CIVIL = "dept:civil-affairs"

HAZARD = {
    "channel": "grid_worker",
    "category": "safety_hazard",
    "urgency": "emergency",
    "title": "燃气管道疑似泄漏",
    "description": "小区东门燃气管道有明显气味。",
    "community": "community:chengdong",
    "compound": "compound:dongsheng",
    "submitter": {"name": "王强", "phone": "13700001111"},
}
SANITATION = {
    "category": "sanitation",
    "title": "垃圾清运不及时",
    "description": "3栋门口垃圾两天没有清运。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "李建华", "phone": "13987654321"},
}
VULNERABLE = {
    "category": "elderly_care",
    "vulnerable": True,
    "title": "独居老人助餐",
    "description": "6栋独居老人行动不便，需要志愿者帮忙送餐。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "和秀英", "phone": "13908871001"},
}


@dataclass
class Cases:
    """The cases the tests walk: one per tier that matters here."""

    major: dict[str, Any]
    routine: dict[str, Any]
    special: dict[str, Any]


@pytest.fixture(scope="module")
async def cases(console_platform: ConsolePlatform) -> AsyncIterator[Cases]:
    """Submit three requests at intake and wait until routing opened their cases."""
    p = console_platform
    staff = p.headers(Role.STAFF, TOWN)
    opened: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=10) as http:
        for body in (HAZARD, SANITATION, VULNERABLE):
            r = await http.post(f"{p.url('intake')}/v1/requests", json=body)
            assert r.status_code == 201, r.text
            rid = r.json()["id"]

            async def routed(rid: str = rid) -> dict[str, Any] | None:
                r = await http.get(
                    f"{p.url('routing')}/v1/cases", params={"request_id": rid}, headers=staff
                )
                return r.json()[0] if r.status_code == 200 and r.json() else None

            opened.append(await eventually(routed, timeout=40, what=f"case of {rid}"))
    major, routine, special = opened
    assert (major["tier"], routine["tier"], special["tier"]) == ("major", "routine", "special")
    yield Cases(major, routine, special)


async def shot(page: Page, artifacts: Path, name: str) -> None:
    path = artifacts / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, path
    print(f"[tongxin] screenshot {path}")


async def test_sign_in_refuses_a_bad_token_plainly(
    browser: Browser, console_platform: ConsolePlatform
) -> None:
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await page.goto(console_platform.console)
    await page.fill("#token", "not-a-token")
    await page.click("#signin-form button[type=submit]")
    error = page.locator("#signin-error .error")
    await expect(error).to_have_attribute("data-code", "unauthorized")
    await expect(error).to_contain_text("登录已失效或令牌无效")
    await expect(page.locator("#nav")).to_be_hidden()
    await context.close()


async def test_major_case_from_whistle_to_resolution(
    browser: Browser, console_platform: ConsolePlatform, cases: Cases, artifacts: Path
) -> None:
    p = console_platform
    cid = cases.major["id"]
    card = f'.case-card[data-case-id="{cid}"]'

    # --- town staff: the queue by tier, the case, the whistle --------------------------------
    staff = await open_console(browser, p, p.token(Role.STAFF, TOWN, "town-staff"))
    await expect(staff.locator("#whoami .unit")).to_have_text("永北镇党委")
    await expect(staff.locator("#whoami .role")).to_have_text("工作人员")
    await expect(staff.locator(f'section[data-tier="major"] {card}')).to_be_visible()
    await expect(
        staff.locator(f'section[data-tier="routine"] [data-case-id="{cases.routine["id"]}"]')
    ).to_be_visible()
    await expect(staff.locator('section[data-tier="major"] h2')).to_contain_text("吹哨报到")
    await expect(staff.locator(f"{card} .countdown")).to_contain_text("报到时限 剩余")
    await shot(staff, artifacts, "01-queue-desktop")

    await staff.click(card)
    await expect(staff.locator("#case-status")).to_have_text("待受理")
    await expect(staff.locator("#classification-reason")).to_have_text(
        cases.major["classification"]["reason"]
    )
    await expect(staff.locator(f'.assignments tr[data-unit="{HOUSING}"] .report')).to_have_text(
        "待报到"
    )
    await staff.check(f'#whistle-form input[value="{CIVIL}"]')
    await staff.fill("#whistle-reason", "涉及独居老人临时安置，请民政局报到")
    await staff.click("#whistle-form button[type=submit]")
    await expect(staff.locator(".notice")).to_contain_text("已吹哨：县民政局")
    await expect(staff.locator(f'.assignments tr[data-unit="{CIVIL}"]')).to_contain_text("吹哨报到")
    await expect(staff.locator('#timeline li[data-event="case.whistled"]')).to_contain_text(
        "涉及独居老人临时安置"
    )

    # the board: both departments still have to report in
    await staff.click('[data-nav="whistle"]')
    row = staff.locator(f'#whistle-board tr[data-case-id="{cid}"]')
    await expect(row.locator(f'td[data-unit="{HOUSING}"]')).to_contain_text("待报到")
    await expect(row.locator(f'td[data-unit="{CIVIL}"]')).to_contain_text("待报到")
    await shot(staff, artifacts, "02-whistle-board-pending")

    # --- another department cannot see the case: the API's 404, shown plainly -------------
    other = await open_console(browser, p, p.token(Role.DEPARTMENT, "dept:justice", "justice"))
    await expect(other.locator("#scope")).to_have_text("仅显示派给 县司法局 的案件。")
    await expect(other.locator(card)).to_have_count(0)
    await other.goto(f"{p.console}#/case/{cid}")
    await expect(other.locator("#view .error")).to_have_attribute("data-code", "not_found")
    await expect(other.locator("#view .error")).to_contain_text("No such case.")
    await other.context.close()

    # --- the housing bureau reports in, reports progress ------------------------------------
    housing = await open_console(browser, p, p.token(Role.DEPARTMENT, HOUSING, "housing-liaison"))
    await expect(housing.locator("#whoami .unit")).to_have_text("县住建局")
    await expect(housing.locator("#whoami .role")).to_have_text("联盟部门")
    await expect(housing.locator(card)).to_be_visible()
    # filtered to the caller's unit: the sanitation case is not the bureau's
    await expect(housing.locator(f'[data-case-id="{cases.routine["id"]}"]')).to_have_count(0)
    await housing.click(card)
    await expect(housing.locator('button[data-action="acknowledge"]')).to_have_text("报到")
    await housing.click('button[data-action="acknowledge"]')
    await expect(housing.locator("#case-status")).to_have_text("已受理")
    await expect(housing.locator(".notice")).to_have_text("已报到。")
    await expect(
        housing.locator(f'.assignments tr[data-unit="{HOUSING}"] .report')
    ).to_contain_text("已报到")
    await expect(housing.locator('button[data-action="acknowledge"]')).to_have_count(0)
    await housing.fill("#action-note", "已组织燃气公司上门排查，关闭东门总阀")
    await housing.click('button[data-action="progress"]')
    await expect(housing.locator("#case-status")).to_have_text("办理中")
    await expect(housing.locator('#timeline li[data-event="case.progressed"]')).to_contain_text(
        "已组织燃气公司上门排查"
    )

    # --- the civil-affairs bureau reports in too ---------------------------------------------
    civil = await open_console(browser, p, p.token(Role.DEPARTMENT, CIVIL, "civil-liaison"))
    await civil.click(card)
    await civil.click('button[data-action="acknowledge"]')
    await expect(civil.locator(f'.assignments tr[data-unit="{CIVIL}"] .report')).to_contain_text(
        "已报到"
    )

    # the board as the staff see it after a refresh: both reported in
    await staff.click(".page-head button")
    await expect(row.locator(f'td[data-unit="{HOUSING}"]')).to_contain_text("已报到")
    await expect(row.locator(f'td[data-unit="{CIVIL}"]')).to_contain_text("已报到")
    summary = staff.locator(f'.board-summary tr[data-unit="{CIVIL}"]')
    await expect(summary.locator("td.report-done")).to_have_text("1")
    await shot(staff, artifacts, "03-whistle-board-reported")

    # --- resolution ---------------------------------------------------------------------------
    await housing.fill("#action-note", "管道已更换，复测无泄漏")
    await housing.click('button[data-action="resolve"]')
    await expect(housing.locator("#case-status")).to_have_text("已办结待回访")
    await expect(housing.locator('#timeline li[data-event="case.resolved"]')).to_contain_text(
        "管道已更换"
    )
    events = housing.locator("#timeline li")
    # routed, whistled, acknowledged, progressed, acknowledged, resolved
    await expect(events).to_have_count(6)
    await expect(housing.locator(".actions .hint")).to_have_text("当前没有可进行的办理操作。")
    await shot(housing, artifacts, "04-case-timeline-resolved")

    # the civil-affairs page is stale: its 办结 meets the API's 409, shown with what is allowed
    await civil.click('button[data-action="resolve"]')
    stale = civil.locator("#action-error .error")
    await expect(stale).to_have_attribute("data-code", "invalid_transition")
    await expect(stale).to_contain_text("当前状态不允许此操作")
    await expect(stale).to_contain_text("cannot resolve a case that is resolved")
    await expect(stale.locator(".details")).to_have_text("当前可进行：无")
    await civil.context.close()

    # the API agrees with what the page shows
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(
            f"{p.url('routing')}/v1/cases/{cid}", headers=p.headers(Role.STAFF, TOWN)
        )
    doc = r.json()
    assert doc["status"] == "resolved"
    history = [h["event"] for h in doc["history"]]
    assert history[:2] == ["case.routed", "case.whistled"]
    assert history.count("case.acknowledged") == 2 and history[-1] == "case.resolved"
    # an open board no longer lists the resolved case
    await staff.click(".page-head button")
    await expect(staff.locator(f'#whistle-board tr[data-case-id="{cid}"]')).to_have_count(0)
    await staff.context.close()
    await housing.context.close()


async def test_kpi_charts_show_the_units_figures(
    browser: Browser, console_platform: ConsolePlatform, cases: Cases, artifacts: Path
) -> None:
    p = console_platform
    async with httpx.AsyncClient(timeout=10) as http:
        staff = p.headers(Role.STAFF, TOWN)
        units = (await http.get(f"{p.url('routing')}/v1/stats/units", headers=staff)).json()
        daily = (await http.get(f"{p.url('routing')}/v1/stats/daily", headers=staff)).json()
    page = await open_console(browser, p, p.token(Role.STAFF, TOWN, "town-staff"))
    await page.click('[data-nav="kpi"]')
    overall = page.locator("#kpi-overall")
    await expect(overall.locator(".tile").first).to_contain_text(str(units["overall"]["cases"]))
    today = daily["days"][-1]
    bar = page.locator(f'#kpi-daily g.day[data-day="{today["day"]}"]')
    await expect(bar).to_have_attribute("data-total", str(today["total"]))
    assert today["total"] >= 3
    await expect(bar.locator("rect")).to_have_count(
        sum(1 for t in ("routine", "general", "major", "special") if today[t])
    )
    await expect(page.locator("#daily-totals")).to_contain_text(
        f"吹哨报到 {sum(d['major'] for d in daily['days'])}"
    )
    # one bar per unit in each rate chart, labelled with the unit's name and its rate
    housing = units["units"][HOUSING]
    row = page.locator('[data-metric="response_rate"] g.bar-row[data-label="县住建局"]')
    await expect(row).to_have_attribute(
        "data-value", f"{round(housing['response_rate'] * 1000) / 10:g}%"
    )
    for metric in ("response_rate", "resolution_rate", "satisfaction_rate", "whistle_rate"):
        await expect(page.locator(f'#kpi-units [data-metric="{metric}"] svg')).to_be_visible()
    whistle = page.locator('[data-metric="whistle_rate"] g.bar-row[data-label="县民政局"]')
    await expect(whistle).to_have_attribute("data-value", "100%")
    await shot(page, artifacts, "05-kpi-charts")
    await page.context.close()


async def test_volunteer_page_lists_offers_unmatched_and_overdue_visits(
    browser: Browser, console_platform: ConsolePlatform, cases: Cases, artifacts: Path
) -> None:
    p = console_platform
    staff = p.headers(Role.STAFF, TOWN)
    async with httpx.AsyncClient(base_url=p.url("volunteer"), timeout=10) as http:

        async def task_and_overdue() -> tuple[list[Any], list[Any]] | None:
            tasks = (
                await http.get("/v1/tasks", params={"case_id": cases.special["id"]}, headers=staff)
            ).json()
            overdue = (await http.get("/v1/care-recipients/overdue", headers=staff)).json()
            return (tasks, overdue) if tasks and overdue else None

        tasks, overdue = await eventually(
            task_and_overdue, timeout=40, what="a task and overdue visits"
        )
        offered = (await http.get("/v1/tasks", params={"status": "offered"}, headers=staff)).json()
        unmatched = (
            await http.get("/v1/tasks", params={"status": "unmatched"}, headers=staff)
        ).json()
    page = await open_console(browser, p, p.token(Role.STAFF, TOWN, "town-staff"))
    await page.click('[data-nav="volunteers"]')
    await expect(page.locator("#offers li")).to_have_count(len(offered))
    await expect(page.locator("#unmatched li")).to_have_count(len(unmatched))
    task = tasks[0]
    where = "#offers" if task["status"] == "offered" else "#unmatched"
    if task["status"] in ("offered", "unmatched"):
        await expect(page.locator(f'{where} li[data-task-id="{task["id"]}"]')).to_contain_text(
            cases.special["id"]
        )
    visits = page.locator("#overdue-visits li")
    await expect(visits).to_have_count(len(overdue))
    await expect(visits.first).to_contain_text(overdue[0]["recipient"]["name"])
    await expect(visits.first.locator(".countdown")).to_contain_text("已超时")
    await shot(page, artifacts, "06-volunteers")
    # a department may not read the volunteer registry's tasks: the API's 403, shown plainly
    dept = await open_console(browser, p, p.token(Role.DEPARTMENT, HOUSING, "housing-liaison"))
    await dept.click('[data-nav="volunteers"]')
    await expect(dept.locator("#offers .error")).to_have_attribute("data-code", "forbidden")
    await expect(dept.locator("#offers .error")).to_contain_text("This role may not read tasks.")
    await page.context.close()
    await dept.context.close()


async def test_queue_highlights_overdue_cases_and_fits_a_phone(
    browser: Browser, console_platform: ConsolePlatform, cases: Cases, artifacts: Path
) -> None:
    p = console_platform
    page = await open_console(browser, p, p.token(Role.STAFF, TOWN, "town-staff"), PHONE)
    special = page.locator(
        f'section[data-tier="special"] .case-card[data-case-id="{cases.special["id"]}"]'
    )
    await expect(special).to_be_visible()
    # the special case's 36 s to acknowledge run out: the countdown turns and the card is flagged
    await expect(special).to_have_class(re.compile(r"\boverdue\b"), timeout=60_000)
    # before routing escalates, the countdown says so; after, a flag names the escalation
    await expect(special).to_contain_text("超时")
    # routing escalates the missed acceptance to the town; the queue's own refresh shows it
    await expect(special.locator(".flag")).to_have_text(
        "超时未受理，已升级至镇党委", timeout=60_000
    )
    await expect(page.locator("#nav")).to_be_visible()
    fits = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the queue is wider than a phone screen"
    await shot(page, artifacts, "07-queue-phone")
    await special.click()
    await expect(page.locator("#case-status")).to_have_text("待受理")
    await expect(page.locator("#classification-reason")).to_have_text(
        cases.special["classification"]["reason"]
    )
    fits = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the case page is wider than a phone screen"
    await shot(page, artifacts, "08-case-phone")
    await page.context.close()


async def test_a_return_needs_its_reason(
    browser: Browser, console_platform: ConsolePlatform, cases: Cases
) -> None:
    p = console_platform
    cid = cases.routine["id"]
    unit = cases.routine["accountable_unit"]
    page = await open_console(browser, p, p.token(Role.DEPARTMENT, unit, "property-manager"))
    await page.click(f'.case-card[data-case-id="{cid}"]')
    await expect(page.locator("#case-status")).to_have_text("待受理")
    # no reason: routing's 422 names the field
    await page.click('button[data-action="return"]')
    error = page.locator("#action-error .error")
    await expect(error).to_have_attribute("data-code", "validation_error")
    await expect(error).to_contain_text("填写内容有误")
    await expect(error.locator(".details")).to_contain_text("body.reason")
    await expect(page.locator("#case-status")).to_have_text("待受理")
    await page.fill("#action-note", "属县住建局职责，请镇党委重新派单")
    await page.click('button[data-action="return"]')
    await expect(page.locator("#case-status")).to_have_text("已退单")
    await expect(page.locator(".notice").last).to_contain_text("属县住建局职责")
    await expect(page.locator('#timeline li[data-event="case.returned"]')).to_contain_text(
        "属县住建局职责"
    )
    await page.context.close()
