"""Routing as real processes: two replicas, one SIGKILLed and restarted, and an
unacknowledged major case escalates to the town committee exactly once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.platform import Platform
from tests.support import eventually, headers_of, read_topic
from tongxin.cli import start_services, stop_services, wait_ready
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc

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


async def escalations(stack: LocalStack, platform: Platform, rid: str) -> list[dict[str, Any]]:
    """Distinct case.escalated events of a request (the outbox may publish one twice)."""
    recs = await read_topic(stack.bootstrap, platform.topic("tongxin.cases.v1"), min_count=1)
    seen: dict[str, dict[str, Any]] = {}
    for r in recs:
        h = headers_of(r)
        if r.key == rid.encode() and h["ce_type"] == "tongxin.case.escalated.v1":
            seen[h["ce_id"]] = json.loads(r.value)
    return list(seen.values())


async def test_two_routing_processes_escalate_exactly_once(
    platform: Platform, stack: LocalStack
) -> None:
    env_b = {**platform.env, "TONGXIN_ROUTING_PORT": str(free_port())}
    second = start_services(env_b, ["routing"], log_dir=platform.log_dir / "routing-b")
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    try:
        wait_ready(env_b, ["routing"], timeout=120)
        async with httpx.AsyncClient(base_url=platform.url("intake"), timeout=10) as http:
            r = await http.post("/v1/requests", json=HAZARD)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        cases = client[platform.db("routing")].cases

        async def routed() -> Doc | None:
            return await cases.find_one({"request_id": rid})

        case = await eventually(routed, timeout=30, what="the case was routed")
        assert case["tier"] == "major" and case["units"][0] == "dept:housing"
        # restart one replica the hard way before the report-in deadline (7.2 s) falls due
        platform.kill("routing")
        platform.start("routing")

        async def to_town() -> list[dict[str, Any]] | None:
            evs = await escalations(stack, platform, rid)
            return evs if any(e["to_unit"] == "town:yongbei" for e in evs) else None

        await eventually(to_town, timeout=60, interval=0.5, what="escalated to the town")
        deadlines = client[platform.db("routing")].deadlines

        async def town_deadline_fired() -> bool:
            d = await deadlines.find_one(
                {"subject": case["_id"], "payload.unit": "town:yongbei", "status": "fired"}
            )
            return d is not None

        # the next level's deadline runs out too; by then any duplicate would have shown
        await eventually(town_deadline_fired, timeout=60, what="the town's deadline fired")

        async def published() -> tuple[list[dict[str, Any]], Doc] | None:
            # every escalation the case records reaches the topic (after its commit)
            evs = await escalations(stack, platform, rid)
            doc = await cases.find_one({"request_id": rid})
            assert doc is not None
            recorded = [h["event"] for h in doc["history"]].count("case.escalated")
            return (evs, doc) if recorded == len(evs) else None

        evs, doc = await eventually(published, timeout=30, what="escalations published")
        targets = Counter(e["to_unit"] for e in evs)
        assert targets["town:yongbei"] == 1, evs
        assert targets["county:yongsheng"] <= 1, evs
        town = next(e for e in evs if e["to_unit"] == "town:yongbei")
        assert (town["from_level"], town["to_level"], town["unit"]) == (
            "community",
            "town",
            "dept:housing",
        )
        assert [h["event"] for h in doc["history"]].count("case.escalated") == len(evs)
        fired = await deadlines.count_documents(
            {"subject": case["_id"], "kind": "ack", "payload.unit": "dept:housing"}
        )
        assert fired == 1
    finally:
        stop_services(second)
        await client.close()
