"""Open311 form mapping, views and keys, the body-size middleware and the read limiter
(no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.intake.domain.open311 import (
    api_key_valid,
    form_loc,
    form_to_body,
    public_view,
    request_view,
)
from services.intake.domain.registry import Registry
from services.intake.limits import READ_COST, BodyLimitMiddleware, TokenBucketLimiter

SEED = Path(__file__).resolve().parents[3] / "deploy" / "seed" / "communities.json"
REGISTRY = Registry.from_seed(json.loads(SEED.read_text(encoding="utf-8")))


def test_seed_has_ten_compounds_each_with_an_owners_committee() -> None:
    assert len(REGISTRY.compounds) == 10
    assert all(c.owners_committee for c in REGISTRY.compounds.values())


def test_form_maps_to_a_request_body() -> None:
    body, _origin = form_to_body(
        {
            "service_code": "sanitation",
            "description": "楼道垃圾很多没人清理",
            "lat": "26.6907",
            "long": "100.7478",
            "first_name": "秀英",
            "last_name": "张",
            "attribute[issue]": "garbage",
            "vulnerable": "true",
        },
        REGISTRY,
        1.5,
    )
    assert body["compound"] == "compound:jinyuan"
    assert body["community"] == "community:liyuan"
    assert body["submitter"]["name"] == "张秀英"
    assert body["attributes"] == {"issue": "garbage"}
    assert body["title"] == "楼道垃圾很多没人清理" and body["vulnerable"] is True
    anon, _ = form_to_body({"service_code": "x", "description": "d"}, REGISTRY, 1.5)
    assert anon["submitter"]["name"] == "匿名" and anon["community"] == ""


def test_error_locations_name_form_fields() -> None:
    assert form_loc(["body", "category"], {}) == ["form", "service_code"]
    assert form_loc(["body", "attributes", "issue"], {}) == ["form", "attribute[issue]"]
    assert form_loc(["body", "location", "lng"], {}) == ["form", "long"]


def test_request_view_is_open_or_closed() -> None:
    doc = {
        "_id": "YS-1",
        "status": "resolved",
        "category": "sanitation",
        "submitted_at": datetime(2025, 5, 1, tzinfo=UTC),
        "units": ["community:liyuan"],
        "timeline": [{"at": datetime(2025, 5, 1, tzinfo=UTC), "note": "已办结", "public": True}],
        "description": "secret",
    }
    view = request_view(doc, {"community:liyuan": "梨园社区"}, full=False)
    assert view["status"] == "closed" and view["agency_responsible"] == "梨园社区"
    assert view["requested_datetime"] == "2025-05-01T08:00:00+08:00"
    assert "description" not in view
    assert request_view({**doc, "status": "reopened"}, {}, full=True)["status"] == "open"


PRIVATE_DOC: dict[str, Any] = {
    "_id": "YS-2",
    "status": "in_progress",
    "category": "sanitation",
    "title": "私密标题",
    "description": "私密描述13812341234",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "address": "私密地址3栋",
    "location": {"lat": 26.69, "lng": 100.74},
    "submitter": {"name": "张秀英", "phone": "13812341234"},
    "attachments": ["https://img.example.cn/private.jpg"],
    "submitted_at": datetime(2025, 5, 1, tzinfo=UTC),
    "units": ["community:liyuan"],
    "timeline": [
        {"at": datetime(2025, 5, 2, tzinfo=UTC), "note": "梨园社区正在办理", "public": True}
    ],
}


def test_the_public_view_holds_only_public_fields() -> None:
    view = public_view(PRIVATE_DOC, {"community:liyuan": "梨园社区"})
    assert set(view) == {
        "service_request_id",
        "status",
        "status_notes",
        "service_name",
        "service_code",
        "agency_responsible",
        "service_notice",
        "requested_datetime",
        "updated_datetime",
        "expected_datetime",
    }
    assert view["status_notes"] == "办理中"  # the status's fixed name, not a timeline note
    text = json.dumps(view, ensure_ascii=False)
    for secret in ("私密", "13812341234", "张秀英", "jinyuan", "private.jpg", "26.69"):
        assert secret not in text
    resident = request_view(PRIVATE_DOC, {}, full=False)
    assert resident["status_notes"] == "办理中：梨园社区正在办理"
    assert resident["address_id"] == "compound:jinyuan" and "description" not in resident
    staff = request_view(PRIVATE_DOC, {}, full=True)
    assert staff["description"] == PRIVATE_DOC["description"] and staff["long"] == 100.74


def test_api_keys_match_exactly() -> None:
    keys = ["k-one-0123456789", "k-two-0123456789"]
    assert api_key_valid("k-two-0123456789", keys)
    for wrong in (None, "", "k-two-012345678", "k-two-01234567890", "K-TWO-0123456789"):
        assert not api_key_valid(wrong, keys)
    assert not api_key_valid("anything", [])


def test_a_read_costs_a_fifth_of_a_submission() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(per_minute=6, burst=3, clock=lambda: now[0])
    reads = 0
    while limiter.take("read:c", READ_COST) == 0:
        reads += 1
    assert reads == round(3 / READ_COST)
    assert limiter.take("c") == 0  # submissions have their own bucket
    now[0] += 10 * READ_COST  # a token per 10 s: a read's worth back
    assert limiter.take("read:c", READ_COST) == 0


async def _run(mw: BodyLimitMiddleware, chunks: list[bytes], headers: list[Any]) -> list[Any]:
    sent: list[Any] = []
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> Any:
        return pending.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await mw({"type": "http", "headers": headers}, receive, send)
    return sent


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message["body"]})


async def test_body_limit_refuses_large_bodies_and_passes_small_ones() -> None:
    mw = BodyLimitMiddleware(_echo, max_bytes=10)
    ok = await _run(mw, [b"12345", b"678"], [])
    assert ok[0]["status"] == 200 and ok[1]["body"] == b"12345678"
    chunked = await _run(mw, [b"123456", b"789012"], [])
    assert chunked[0]["status"] == 413
    assert json.loads(chunked[1]["body"])["error"]["code"] == "payload_too_large"
    declared = await _run(mw, [b""], [(b"content-length", b"11")])
    assert declared[0]["status"] == 413
