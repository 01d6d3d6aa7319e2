"""Notify's HTTP API: preferences (and their 422s), listing with object-level checks, channels."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.notify.harness import Notify, running_notify, stack_settings
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role


@pytest.fixture(scope="module")
async def notify(stack: LocalStack) -> AsyncIterator[Notify]:
    async with running_notify(stack_settings(stack)) as n:
        yield n


@pytest.mark.parametrize(
    "body",
    [
        {"channels": ["pager"]},
        {"channels": []},
        {"channels": ["sms", "sms"]},
        {"channels": ["sms"], "quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"channels": ["sms"], "quiet_hours": {"start": "22:00", "end": "22:00"}},
        {"channels": ["sms"], "quiet_hours": {"start": "22:00"}},
        {"channels": ["sms"], "colour": "red"},
        {"channels": ["email"]},  # the volunteer has no e-mail address
    ],
)
async def test_invalid_preferences_are_422_and_change_nothing(
    notify: Notify, body: dict[str, object]
) -> None:
    r = await notify.http.put(
        "/v1/preferences/volunteer:vol:002", json=body, headers=notify.token()
    )
    assert r.status_code == 422, r.text
    assert set(r.json()["error"]) == {"code", "message", "details"}
    assert await notify.db.preferences.count_documents({"_id": "volunteer:vol:002"}) == 0


async def test_put_and_get_a_preference(notify: Notify) -> None:
    got = await notify.http.get("/v1/preferences/liaison:dept:justice", headers=notify.token())
    assert got.status_code == 200
    assert got.json()["source"] == "directory"
    assert got.json()["quiet_hours"] == {"start": "22:00", "end": "07:30"}
    body = {"channels": ["sms", "dingtalk"], "quiet_hours": {"start": "21:30", "end": "06:45"}}
    r = await notify.http.put(
        "/v1/preferences/liaison:dept:justice", json=body, headers=notify.token()
    )
    assert r.status_code == 200, r.text
    again = await notify.http.get("/v1/preferences/liaison:dept:justice", headers=notify.token())
    assert again.json()["channels"] == ["sms", "dingtalk"]
    assert again.json()["quiet_hours"] == body["quiet_hours"]
    assert again.json()["source"] == "preference" and again.json()["timezone"] == "Asia/Shanghai"
    # no quiet hours at all
    off = await notify.http.put(
        "/v1/preferences/liaison:dept:justice", json={"channels": ["sms"]}, headers=notify.token()
    )
    assert off.status_code == 200 and off.json()["quiet_hours"] is None


async def test_who_may_set_and_read_what(notify: Notify) -> None:
    body = {"channels": ["sms"]}
    anon = await notify.http.put("/v1/preferences/volunteer:vol:003", json=body)
    assert anon.status_code == 401
    other = notify.token(Role.VOLUNTEER, sub="vol:004")
    assert (
        await notify.http.put("/v1/preferences/volunteer:vol:003", json=body, headers=other)
    ).status_code == 403
    own = notify.token(Role.VOLUNTEER, sub="vol:003")
    assert (
        await notify.http.put("/v1/preferences/volunteer:vol:003", json=body, headers=own)
    ).status_code == 200
    dept = notify.token(Role.DEPARTMENT, unit="dept:justice")
    ok = await notify.http.put("/v1/preferences/liaison:dept:justice", json=body, headers=dept)
    assert ok.status_code == 200
    assert (
        await notify.http.put("/v1/preferences/liaison:dept:health", json=body, headers=dept)
    ).status_code == 403
    nobody = await notify.http.put(
        "/v1/preferences/unit:nowhere", json=body, headers=notify.token()
    )
    assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "not_found"
    # listing: a department may not read another unit's notifications, a platform nothing
    r = await notify.http.get("/v1/notifications", params={"recipient": "staff:duty"}, headers=dept)
    assert r.status_code == 403
    assert (await notify.http.get("/v1/notifications", headers=dept)).status_code == 200
    platform = notify.token(Role.PLATFORM)
    assert (await notify.http.get("/v1/notifications", headers=platform)).status_code == 403
    assert (
        await notify.http.get(
            "/v1/notifications", params={"status": "weird"}, headers=notify.token()
        )
    ).status_code == 422


async def test_channels_report_configuration_and_health(notify: Notify) -> None:
    r = await notify.http.get("/v1/channels")
    assert r.status_code == 200
    by = {c["channel"]: c for c in r.json()}
    assert set(by) == {"webhook", "wecom", "dingtalk", "email", "sms", "console"}
    assert by["console"]["status"] == "ok" and by["sms"]["status"] == "disabled"
    assert by["webhook"]["enabled"] is True and by["webhook"]["timeout_s"] > 0
    assert by["sms"]["concurrency"] >= 1
