"""Notify's HTTP API: preferences (and their 422s), listing with object-level checks (each
caller sees only the notifications it may see), channels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.notify.harness import Notify, routed, running_notify, stack_settings
from tests.integration.notify.test_delivery import offered
from tests.support import eventually, unique
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


async def test_each_caller_lists_only_the_notifications_it_may_see(notify: Notify) -> None:
    """Staff and admins see every delivery; a department its unit's and its liaison's; a
    volunteer their own — also when filtering by a request that concerns someone else."""
    liyuan, justice, vol1, vol2 = (unique("YS-") for _ in range(4))
    await notify.publish(routed(liyuan))  # to 梨园社区 (no liaison) and the duty staff
    await notify.publish(routed(justice).model_copy(update={"units": ["dept:justice"]}))
    await notify.publish(offered(vol1))  # to volunteer vol:001 and the duty staff
    await notify.publish(offered(vol2).model_copy(update={"volunteer_id": "vol:002"}))
    mine = {liyuan, justice, vol1, vol2}
    everything = {
        (liyuan, "community:liyuan"),
        (liyuan, "staff:duty"),
        (justice, "dept:justice"),
        (justice, "liaison:dept:justice"),
        (justice, "staff:duty"),
        (vol1, "volunteer:vol:001"),
        (vol1, "staff:duty"),
        (vol2, "volunteer:vol:002"),
        (vol2, "staff:duty"),
    }

    async def planned() -> bool:
        docs = await notify.deliveries(request_id={"$in": sorted(mine)})
        return {(d["request_id"], d["recipient"]) for d in docs} == everything

    await eventually(planned, timeout=30, what="every delivery of the four events recorded")

    async def listed(headers: dict[str, str], **params: Any) -> set[tuple[str, str]]:
        r = await notify.http.get(
            "/v1/notifications", params={"limit": 500, **params}, headers=headers
        )
        assert r.status_code == 200, r.text
        return {(x["request_id"], x["recipient"]) for x in r.json()}

    def ours(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
        return {p for p in pairs if p[0] in mine}

    for who in (notify.token(), notify.token(Role.ADMIN, sub="admin-1")):
        assert ours(await listed(who)) == everything
    dept = notify.token(Role.DEPARTMENT, sub="justice-1", unit="dept:justice")
    community = notify.token(Role.DEPARTMENT, sub="liyuan-1", unit="community:liyuan")
    one = notify.token(Role.VOLUNTEER, sub="vol:001")
    two = notify.token(Role.VOLUNTEER, sub="vol:002")
    nobody = notify.token(Role.VOLUNTEER, sub="vol:008")
    # what each sees at all: only its own recipients (whatever other tests left here)
    assert {r for _, r in await listed(dept)} == {"dept:justice", "liaison:dept:justice"}
    assert {r for _, r in await listed(community)} == {"community:liyuan"}
    assert {r for _, r in await listed(one)} == {"volunteer:vol:001"}
    assert {r for _, r in await listed(two)} == {"volunteer:vol:002"}
    assert await listed(nobody) == set()
    # ... and all of that
    assert ours(await listed(dept)) == {
        (justice, "dept:justice"),
        (justice, "liaison:dept:justice"),
    }
    assert ours(await listed(community)) == {(liyuan, "community:liyuan")}
    assert ours(await listed(one)) == {(vol1, "volunteer:vol:001")}
    assert ours(await listed(two)) == {(vol2, "volunteer:vol:002")}
    # other filters narrow within the caller's own, never widen past it
    assert await listed(one, request_id=justice) == set()
    assert await listed(one, request_id=vol2) == set()
    assert await listed(dept, request_id=liyuan) == set()
    assert await listed(two, request_id=vol2) == {(vol2, "volunteer:vol:002")}
    [own] = await notify.deliveries(request_id=vol1, recipient="volunteer:vol:001")
    assert await listed(one, channel=own["channel"]) == {(vol1, "volunteer:vol:001")}
    assert await listed(dept, recipient="liaison:dept:justice", request_id=justice) == {
        (justice, "liaison:dept:justice")
    }
    # naming someone else's recipient is refused, not answered with an empty list
    for headers, other in (
        (one, "volunteer:vol:002"),
        (one, "staff:duty"),
        (dept, "community:liyuan"),
        (community, "liaison:dept:justice"),
    ):
        r = await notify.http.get("/v1/notifications", params={"recipient": other}, headers=headers)
        assert r.status_code == 403, (other, r.text)
        assert r.json()["error"]["code"] == "forbidden"
