"""The foundation slice end to end: request → case → volunteer task → webhook, over real
Kafka and SecantusDB, with the four services as separate processes."""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.platform import Platform
from tests.support import eventually, headers_of, read_topic
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc

ELDERLY = {
    "channel": "grid_worker",
    "category": "elderly_care",
    "title": "独居老人助餐",
    "description": "6栋独居老人行动不便，需要志愿者帮忙送餐。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "李建华", "phone": "13987654321", "party_member": True},
}


async def submit(platform: Platform, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=platform.url("intake"), timeout=10) as http:
        return await http.post("/v1/requests", json=body, headers=headers)


async def test_request_reaches_the_webhook_with_cloudevents_on_every_topic(
    platform: Platform, stack: LocalStack
) -> None:
    r = await submit(platform, ELDERLY)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert rid.startswith("YS-") and len(r.json()["tracking_code"]) >= 16

    async def offered_hook() -> list[dict[str, Any]]:
        return platform.sink.matching(request_id=rid, event_type="task.offered")

    # a bound for a slow machine, not a check of speed (bench/ measures latency)
    hooks = await eventually(offered_hook, timeout=60, what="task.offered reached the webhook")
    assert "李红梅" in hooks[0]["text"] or "志愿者" in hooks[0]["text"]
    await eventually(
        lambda: _has(platform.sink.matching(request_id=rid, event_type="case.routed")),
        timeout=60,
        what="case.routed reached the webhook",
    )

    expected = {
        "tongxin.requests.v1": "tongxin.request.submitted.v1",
        "tongxin.cases.v1": "tongxin.case.routed.v1",
        "tongxin.volunteer.tasks.v1": "tongxin.task.offered.v1",
        "tongxin.notifications.v1": "tongxin.notification.sent.v1",
    }
    for topic, ce_type in expected.items():
        # the relay may publish after the webhook was hit: wait for this request's record
        async def mine(topic: str = topic) -> list[Any]:
            records = await read_topic(stack.bootstrap, platform.topic(topic), timeout=5)
            return [r for r in records if r.key == rid.encode()]

        records = await eventually(mine, timeout=60, what=f"a record for {rid} on {topic}")
        h = headers_of(records[0])
        assert h["ce_type"] == ce_type
        assert h["ce_specversion"] == "1.0"
        assert h["ce_subject"] == rid
        assert h["ce_source"].startswith("/tongxin/")
        assert h["ce_id"] and h["ce_time"]
        assert h["content-type"] == "application/json"

    # the resident follows it with the tracking code; the phone is masked
    async with httpx.AsyncClient(base_url=platform.url("intake"), timeout=10) as http:
        view = await http.get(
            f"/v1/requests/{rid}", params={"tracking_code": r.json()["tracking_code"]}
        )
        assert view.status_code == 200
        assert view.json()["submitter"]["phone"] == "139****4321"
        wrong = await http.get(f"/v1/requests/{rid}", params={"tracking_code": "x" * 16})
        assert wrong.status_code == 404


async def _has(items: list[Any]) -> bool:
    return bool(items)


async def test_malformed_request_gets_422_and_changes_nothing(
    platform: Platform, stack: LocalStack
) -> None:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongodb_uri)
    db = client[platform.db("intake")]
    before = (await db.requests.count_documents({}), await db.outbox.count_documents({}))
    bad = {**ELDERLY, "category": "no_such_category", "submitter": {"name": "", "phone": "123"}}
    r = await submit(platform, bad)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    locs = {tuple(d["loc"]) for d in err["details"]}
    assert ("body", "category") in locs
    assert ("body", "submitter", "phone") in locs
    unknown_place = await submit(platform, {**ELDERLY, "community": "community:nowhere"})
    assert unknown_place.status_code == 422
    assert unknown_place.json()["error"]["details"][0]["loc"] == ["body", "community"]
    not_json = await submit(platform, None)  # type: ignore[arg-type]
    assert not_json.status_code == 422
    after = (await db.requests.count_documents({}), await db.outbox.count_documents({}))
    assert after == before
    await client.close()


async def test_idempotency_key_replays_and_refuses_a_different_body(platform: Platform) -> None:
    first = await submit(platform, ELDERLY, **{"Idempotency-Key": "k-123"})
    again = await submit(platform, ELDERLY, **{"Idempotency-Key": "k-123"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await submit(
        platform, {**ELDERLY, "title": "另一件事情"}, **{"Idempotency-Key": "k-123"}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_routing_killed_before_consuming_routes_each_request_exactly_once(
    platform: Platform, stack: LocalStack
) -> None:
    """SIGKILL routing, submit, kill it again mid-stream, restart: one case, one case.routed."""
    platform.kill("routing")
    ids = []
    for i in range(12):
        r = await submit(platform, {**ELDERLY, "title": f"助餐请求{i:02d}"})
        assert r.status_code == 201
        ids.append(r.json()["id"])
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongodb_uri)
    cases = client[platform.db("routing")].cases
    platform.start("routing")
    # kill it again as soon as it has routed a few (between consumption and commit)
    await eventually(
        lambda: _at_least(cases.count_documents({"request_id": {"$in": ids}}), 1),
        timeout=30,
        what="routing resumed",
    )
    platform.kill("routing")
    platform.start("routing")
    await eventually(
        lambda: _at_least(cases.count_documents({"request_id": {"$in": ids}}), len(ids)),
        timeout=60,
        what="every request routed",
    )
    per_request: dict[str, int] = defaultdict(int)
    async for c in cases.find({"request_id": {"$in": ids}}):
        per_request[c["request_id"]] += 1
    assert per_request == dict.fromkeys(ids, 1)

    records = await read_topic(stack.bootstrap, platform.topic("tongxin.cases.v1"), min_count=1)
    routed_ids: dict[str, set[str]] = defaultdict(set)
    for rec in records:
        h = headers_of(rec)
        if h["ce_type"] == "tongxin.case.routed.v1" and rec.key.decode() in ids:
            routed_ids[rec.key.decode()].add(h["ce_id"])
    assert {k: len(v) for k, v in routed_ids.items()} == dict.fromkeys(ids, 1)
    await client.close()


async def _at_least(coro: Any, n: int) -> bool:
    return (await coro) >= n


async def test_sigterm_stops_a_service_cleanly_and_it_resumes(platform: Platform) -> None:
    """SIGTERM: consumers commit, the outbox drains, the process exits; a restart resumes."""
    proc = platform.procs.pop("volunteer")
    proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after its graceful shutdown, so the status is -SIGTERM
    code = await asyncio.to_thread(proc.wait, 40)
    assert code in (0, -signal.SIGTERM)
    log = platform.log("volunteer")
    assert '"msg": "consumer stopped"' in log
    assert '"msg": "service stopped"' in log
    r = await submit(platform, {**ELDERLY, "title": "停机期间的请求"})
    assert r.status_code == 201
    rid = r.json()["id"]
    platform.start("volunteer")
    # earlier tests filled the elder-care volunteers' capacity: offered or unmatched
    await eventually(
        lambda: _has(
            platform.sink.matching(request_id=rid, event_type="task.offered")
            + platform.sink.matching(request_id=rid, event_type="task.unmatched")
        ),
        timeout=30,
        what="the restarted volunteer service handled the case",
    )
