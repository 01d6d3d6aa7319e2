"""PII end to end: requests with distinctive names and phone numbers go through all four
services (as processes); afterwards no service's log carries a phone number or a name, and
the public status topic carries neither (phones masked, no street address)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.platform import Platform
from tests.support import eventually, read_topic
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.topics import INBOUND_REQUESTS, PUBLIC_STATUS
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.kafka import make_producer

# names no seed file or template contains; phones nobody else uses
PEOPLE = [
    ("端木蓉蓉", "13561728394", "elderly_care", "需要志愿者帮忙送餐，老人行动不便。"),
    ("上官飞燕", "18820461357", "sanitation", "楼道垃圾堆了三天没人清理，气味很大。"),
    ("欧阳锦绣", "15937164820", "safety_hazard", "小区配电箱门坏了，电线裸露很危险。"),
]
STREET = "金苑小区7栋2单元301室"
INBOUND_NAME, INBOUND_PHONE = "慕容秋水", "13707319264"
BAD_INBOUND_NAME = "司马相如"


def _body(name: str, phone: str, category: str, text: str) -> dict[str, Any]:
    return {
        "category": category,
        "title": "测试诉求",
        # residents write their number into the text too, in other shapes
        "description": f"{text}联系人{name}，电话 {phone[:3]}-{phone[3:7]}-{phone[7:]}。",
        "community": "community:liyuan",
        "compound": "compound:jinyuan",
        "address": STREET,
        "urgency": "emergency" if category == "safety_hazard" else "normal",
        "submitter": {"name": name, "phone": phone},
    }


def _shapes(phone: str) -> list[str]:
    return [phone, f"{phone[:3]}-{phone[3:7]}-{phone[7:]}", f"{phone[:3]} {phone[3:7]} {phone[7:]}"]


@pytest.fixture(scope="module")
async def journeys(platform: Platform, stack: LocalStack) -> list[str]:
    """Submit the requests and wait until all four services handled them; their ids."""
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=platform.url("intake"), timeout=10) as http:
        for person in PEOPLE:
            r = await http.post("/v1/requests", json=_body(*person))
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        # a bad one too: its error must not echo the contact either
        bad = _body(BAD_INBOUND_NAME, "13311112222", "sanitation", "无效")
        bad["submitter"]["phone"] = "12345"
        assert (await http.post("/v1/requests", json=bad)).status_code == 422

    # another platform's request on the inbound topic, and an invalid one (parked on DLQ)
    producer = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await producer.start()
    try:
        for name, phone, category in (
            (INBOUND_NAME, INBOUND_PHONE, "sanitation"),
            (BAD_INBOUND_NAME, "13311112222", "no_such_category"),
        ):
            data = _body(name, phone, "sanitation", "楼道灯坏了很久了。")
            data["category"] = category
            env = Envelope(
                id=f"hotline-{len(name)}-{phone[-4:]}-{category}",
                type="tongxin.request.submitted.v1",
                source="/hotline/12345",
                key=f"hotline-{phone[-4:]}",
                data=data,
            )
            key, value, headers = encode_record(env)
            await producer.send_and_wait(
                platform.topic(INBOUND_REQUESTS.name), value=value, key=key, headers=headers
            )
    finally:
        await producer.stop()

    # all four services handled them: a case, a notification (and a volunteer task)
    async def notified() -> bool:
        return all(platform.sink.matching(request_id=rid) for rid in ids)

    await eventually(notified, timeout=60, what="notify delivered for every request")

    async def offered() -> bool:
        return bool(platform.sink.matching(request_id=ids[0], event_type="task.offered"))

    await eventually(offered, timeout=60, what="volunteer offered the elderly-care task")

    async def inbound_seen() -> bool:
        return '"inbound request"' in platform.log("intake")

    await eventually(inbound_seen, timeout=30, what="intake consumed the inbound request")

    return ids


PHONES = [p for _, p, _, _ in PEOPLE] + [INBOUND_PHONE, "13311112222"]
NAMES = [n for n, _, _, _ in PEOPLE] + [INBOUND_NAME, BAD_INBOUND_NAME]


def _leaks(platform: Platform, service: str, *, names: bool = True) -> list[str]:
    text = platform.log(service)
    assert text.strip(), f"{service} wrote no log"
    found = [f"phone {s}" for phone in PHONES for s in _shapes(phone) if s in text]
    if STREET in text:
        found.append("street address")
    if names:
        found += [f"name {n}" for n in NAMES if n in text]
    return found


@pytest.mark.parametrize("service", ["intake", "routing", "volunteer", "notify"])
async def test_no_phone_or_street_address_in_any_log(
    platform: Platform, journeys: list[str], service: str
) -> None:
    assert _leaks(platform, service, names=False) == []


@pytest.mark.parametrize("service", ["intake", "routing", "volunteer"])
async def test_no_name_in_the_logs(platform: Platform, journeys: list[str], service: str) -> None:
    assert _leaks(platform, service) == []


async def test_no_name_in_the_notify_log(platform: Platform, journeys: list[str]) -> None:
    assert _leaks(platform, "notify") == []


async def test_the_public_status_topic_carries_no_contact(
    platform: Platform, stack: LocalStack, journeys: list[str]
) -> None:
    ids = journeys
    records = await read_topic(
        stack.bootstrap, platform.topic(PUBLIC_STATUS.name), min_count=len(ids)
    )
    mine = [json.loads(r.value) for r in records if r.key and r.key.decode() in ids]
    assert {m["request_id"] for m in mine} >= set(ids)
    public = json.dumps(mine, ensure_ascii=False)
    for phone in PHONES:
        assert all(s not in public for s in _shapes(phone))
    for name in NAMES:
        assert name not in public
    assert STREET not in public
    assert all(m["phone_masked"] is None or "****" in m["phone_masked"] for m in mine)
