"""Request validation, ids, tracking codes, masking, cursors, duplicates (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.intake.domain.duplicates import Candidate, find_original, similarity
from services.intake.domain.paging import BadCursor, RequestFilter, decode_cursor, encode_cursor
from services.intake.domain.requests import (
    InboundRequest,
    RequestCreate,
    StoredRequest,
    code_matches,
    format_request_id,
    hash_code,
    local_day,
    mask_phone,
    new_tracking_code,
    public_status,
)

BODY: dict[str, Any] = {
    "category": "sanitation",
    "title": "楼道垃圾",
    "description": "3单元楼道垃圾多日无人清理",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "张秀英", "phone": "+86 138-1234-1234"},
}


def test_phone_is_normalised_and_validated() -> None:
    assert RequestCreate.model_validate(BODY).submitter.phone == "13812341234"
    for bad in ("12812341234", "1381234123", "phone"):
        with pytest.raises(ValidationError):
            RequestCreate.model_validate({**BODY, "submitter": {"name": "x", "phone": bad}})


def test_a_place_is_required() -> None:
    with pytest.raises(ValidationError):
        RequestCreate.model_validate({**BODY, "compound": None})
    ok = RequestCreate.model_validate({**BODY, "compound": None, "address": "梨园路1号"})
    assert ok.address == "梨园路1号"


def test_inbound_ignores_unknown_fields_and_defaults_to_platform() -> None:
    body = InboundRequest.model_validate(
        {**BODY, "their_ref": "X1", "submitter": {**BODY["submitter"], "operator": 7}}
    )
    assert body.channel == "platform"
    with pytest.raises(ValidationError):
        RequestCreate.model_validate({**BODY, "their_ref": "X1"})


def test_ids_carry_the_county_date() -> None:
    late_utc = datetime(2025, 1, 1, 17, 30, tzinfo=UTC)  # 01:30 on 2 January in Yunnan
    assert format_request_id("YS", local_day(late_utc), 42) == "YS-20250102-000042"


def test_tracking_codes_are_unguessable_and_stored_hashed() -> None:
    codes = {new_tracking_code() for _ in range(1000)}
    assert len(codes) == 1000 and all(len(c) >= 16 for c in codes)
    code = codes.pop()
    assert code_matches(code, hash_code(code)) and not code_matches(code + "x", hash_code(code))


@given(st.from_regex(r"1[3-9]\d{9}", fullmatch=True))
def test_masked_phone_keeps_only_prefix_and_suffix(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked == f"{phone[:3]}****{phone[-4:]}"
    assert phone[3:7] not in (masked or "")[3:7]


def test_public_status_carries_no_name_or_address() -> None:
    now = datetime.now(UTC)
    req = StoredRequest.model_validate(
        {
            "_id": "YS-1",
            **RequestCreate.model_validate({**BODY, "address": "梨园路18号"}).model_dump(
                mode="json"
            ),
            "tracking_hash": "h",
            "status": "submitted",
            "submitted_at": now,
            "status_changed_at": now,
        }
    )
    status = public_status(req, "submitted", "诉求已受理", now, None)
    raw = status.model_dump_json()
    assert "张秀英" not in raw and "梨园路" not in raw and "13812341234" not in raw
    assert status.phone_masked == "138****1234"


@given(st.datetimes(timezones=st.just(UTC)), st.text(min_size=1, max_size=40))
def test_cursor_round_trip(at: datetime, rid: str) -> None:
    assert decode_cursor(encode_cursor(at, rid)) == (at, rid)


@pytest.mark.parametrize("bad", ["", "!!", "bm90IGpzb24", "WzEsMl0"])
def test_foreign_cursors_are_refused(bad: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(bad)


def test_filter_query_continues_after_the_cursor() -> None:
    at = datetime(2025, 5, 1, tzinfo=UTC)
    q = RequestFilter(community="community:liyuan").query((at, "YS-9"))
    assert q["$and"][0] == {"community": "community:liyuan"}
    assert {"submitted_at": at, "_id": {"$lt": "YS-9"}} in q["$and"][1]["$or"]


NOW = datetime(2025, 5, 3, tzinfo=UTC)


def test_similar_chinese_texts_score_high_and_different_ones_low() -> None:
    a = "小区东门路灯坏了 幸福里东门的路灯坏了好几天，晚上很黑。"
    b = "东门路灯坏了 幸福里东门路灯坏了好几天了，晚上太黑。"
    c = "健身器材损坏 广场健身器材松动危险"
    assert similarity(a, b) > 0.6
    assert similarity(a, c) < 0.2
    assert similarity("", a) == 0.0


def test_find_original_links_to_the_root_inside_the_window() -> None:
    text = "东门路灯坏了好几天"
    cands = [
        Candidate("YS-1", text, NOW - timedelta(hours=10)),
        Candidate("YS-2", text, NOW - timedelta(hours=5), duplicate_of="YS-1"),
        Candidate("YS-0", text, NOW - timedelta(hours=80)),  # outside 72 h
    ]
    found = find_original(text, NOW, cands)
    assert found is not None and found[0] == "YS-1"
    assert find_original(text, NOW, cands[2:]) is None
    assert find_original("完全不同的事情", NOW, cands) is None
