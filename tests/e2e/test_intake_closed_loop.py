"""The 12345 closed loop through intake as a process (受理 → 派单 → 办理 → 回访): a request
over HTTP and one from another platform on the inbound topic each show a full timeline up
to resolution and accept feedback exactly once."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.platform import Platform
from tests.support import eventually, headers_of, read_topic
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import Event
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.kafka import make_producer
from tongxin.runtime.settings import PLACEHOLDER_SECRET

BODY: dict[str, Any] = {
    "channel": "app",
    "category": "property_service",
    "title": "电梯故障",
    "description": "2栋电梯停在三楼不动，老人上下楼困难。",
    "community": "community:chengdong",
    "compound": "compound:hexie-jiayuan",
    "submitter": {"name": "陈立新", "phone": "13698765432"},
    "attributes": {"issue": "elevator", "building": "2栋"},
}


@pytest.fixture
async def producer(stack: LocalStack) -> AsyncIterator[AIOKafkaProducer]:
    p = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await p.start()
    yield p
    await p.stop()


def staff(platform: Platform) -> dict[str, str]:
    secret = platform.env.get("TONGXIN_JWT_SECRET") or PLACEHOLDER_SECRET
    return {"Authorization": f"Bearer {mint_token(secret, sub='e2e', role=Role.STAFF)}"}


async def publish(
    producer: AIOKafkaProducer, topic: str, event: Event | None, env: Envelope | None = None
) -> None:
    env = env or Envelope.wrap(event, "/tongxin/routing")  # type: ignore[arg-type]
    key, value, headers = encode_record(env)
    await producer.send_and_wait(topic, value=value, key=key, headers=headers)


async def view(http: httpx.AsyncClient, platform: Platform, rid: str) -> dict[str, Any]:
    r = await http.get(f"/v1/requests/{rid}", headers=staff(platform))
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def walk(
    platform: Platform, producer: AIOKafkaProducer, http: httpx.AsyncClient, rid: str
) -> dict[str, Any]:
    """Wait for routing's case.routed, then act for the handling unit over routing's HTTP
    API (acknowledge → progress → resolve) until intake shows the request resolved."""

    async def routed() -> dict[str, Any] | None:
        v = await view(http, platform, rid)
        return v if v.get("case_id") else None

    v = await eventually(routed, timeout=30, what=f"routing routed {rid}")
    case_id, unit = v["case_id"], (v.get("units") or ["community:chengdong"])[0]
    async with httpx.AsyncClient(base_url=platform.url("routing"), timeout=10) as routing:
        for action in ("acknowledge", "progress", "resolve"):
            r = await routing.post(
                f"/v1/cases/{case_id}/{action}",
                json={"unit": unit, "note": f"e2e {action}"},
                headers=staff(platform),
            )
            assert r.status_code == 200, (action, r.status_code, r.text)

    async def resolved() -> dict[str, Any] | None:
        v = await view(http, platform, rid)
        return v if v["status"] == "resolved" else None

    return await eventually(resolved, timeout=30, what=f"{rid} resolved")


async def feedback_exactly_once(http: httpx.AsyncClient, rid: str, code: str) -> None:
    url = f"/v1/requests/{rid}/feedback"
    first = await http.post(url, json={"tracking_code": code, "rating": "satisfied"})
    assert first.status_code == 201, first.text
    second = await http.post(url, json={"tracking_code": code, "rating": "dissatisfied"})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "feedback_already_given"


async def test_http_and_inbound_requests_walk_the_closed_loop(
    platform: Platform, stack: LocalStack, producer: AIOKafkaProducer
) -> None:
    async with httpx.AsyncClient(base_url=platform.url("intake"), timeout=10) as http:
        r = await http.post("/v1/requests", json=BODY)
        assert r.status_code == 201, r.text
        http_rid, http_code = r.json()["id"], r.json()["tracking_code"]

        ce_id = str(uuid.uuid4())
        inbound = Envelope(
            id=ce_id,
            type="tongxin.request.submitted.v1",
            source="/12345-hotline",
            key=ce_id,
            data={**BODY, "channel": "hotline", "title": "电梯困人隐患"},
        )
        for _ in range(2):  # the platform retried: still one request
            await publish(producer, platform.topic("tongxin.inbound.requests.v1"), None, inbound)

        async def inbound_stored() -> str | None:
            listed = await http.get(
                "/v1/requests",
                params={"channel": "hotline", "compound": BODY["compound"]},
                headers=staff(platform),
            )
            items = listed.json()["items"]
            return items[0]["id"] if items else None

        inbound_rid = await eventually(inbound_stored, timeout=30, what="inbound request stored")

        for rid in (http_rid, inbound_rid):
            done = await walk(platform, producer, http, rid)
            kinds = [e["kind"] for e in done["timeline"]]
            assert kinds[:2] == ["request.submitted", "case.routed"], kinds
            for k in ("case.acknowledged", "case.progressed", "case.resolved"):
                assert k in kinds

        # the resident follows the HTTP one with the tracking code and rates it once
        mine = await http.get(f"/v1/requests/{http_rid}", params={"tracking_code": http_code})
        assert mine.json()["status"] == "resolved", mine.json()["timeline"]
        assert mine.json()["submitter"]["phone"] == "136****5432"
        await feedback_exactly_once(http, http_rid, http_code)
        # the hotline request is rated on the resident's behalf by staff (回访 call)
        url = f"/v1/requests/{inbound_rid}/feedback"
        first = await http.post(
            url, json={"rating": "basically_satisfied"}, headers=staff(platform)
        )
        assert first.status_code == 201, first.text
        again = await http.post(url, json={"rating": "satisfied"}, headers=staff(platform))
        assert again.status_code == 409

    requests_topic = await read_topic(
        stack.bootstrap, platform.topic("tongxin.requests.v1"), min_count=4
    )
    feedback = [
        json.loads(rec.value)
        for rec in requests_topic
        if headers_of(rec)["ce_type"] == "tongxin.request.feedback_given.v1"
        and rec.key.decode() in (http_rid, inbound_rid)
    ]
    assert sorted(f["request_id"] for f in feedback) == sorted([http_rid, inbound_rid])
    submitted_inbound = [
        rec
        for rec in requests_topic
        if rec.key.decode() == inbound_rid
        and headers_of(rec)["ce_type"] == "tongxin.request.submitted.v1"
    ]
    assert len(submitted_inbound) == 1

    public = await read_topic(
        stack.bootstrap, platform.topic("tongxin.public.status.v1"), min_count=1
    )
    mine_public = [json.loads(r.value) for r in public if r.key.decode() == http_rid]
    statuses = [p["status"] for p in mine_public]
    assert "resolved" in statuses, statuses
    # satisfied feedback: routing closes the case, intake shows it closed
    assert await eventually(
        lambda: _last_public_status(stack, platform, http_rid, "closed"),
        timeout=30,
        what="the public status ends closed after satisfied feedback",
    )
    assert all("陈立新" not in json.dumps(p, ensure_ascii=False) for p in mine_public)


async def _last_public_status(stack: LocalStack, platform: Platform, rid: str, want: str) -> bool:
    public = await read_topic(stack.bootstrap, platform.topic("tongxin.public.status.v1"))
    mine = [json.loads(r.value)["status"] for r in public if r.key.decode() == rid]
    return bool(mine) and mine[-1] == want
