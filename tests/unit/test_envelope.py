"""CloudEvents binary mode over Kafka: Envelope.wrap, encode_record, decode_record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tongxin.contracts.enums import Category, Channel, Urgency
from tongxin.contracts.envelope import (
    CONTENT_TYPE,
    Envelope,
    InvalidEnvelope,
    decode_record,
    encode_record,
)
from tongxin.contracts.events import RequestSubmitted, Submitter

SOURCE = "tongxin/intake"
TITLE_ZH = "独居老人家中漏水，需要上门维修"
NAME_ZH = "张阿姨"

REQUIRED_HEADERS = ("ce_id", "ce_type", "ce_source", "ce_specversion")


def _submitted(request_id: str = "req-001") -> RequestSubmitted:
    return RequestSubmitted(
        request_id=request_id,
        channel=Channel.HOTLINE,
        category=Category.ELDERLY_CARE,
        title=TITLE_ZH,
        description="楼上漏水已经三天了，物业没有回应。",
        community="同心社区",
        compound="幸福小区",
        urgency=Urgency.URGENT,
        vulnerable=True,
        submitter=Submitter(name=NAME_ZH, phone="13800000000"),
        attributes={"楼层": 6, "tags": ["漏水", "老人"]},
        submitted_at=datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
    )


def _valid_headers(**overrides: bytes) -> list[tuple[str, bytes]]:
    headers = {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-1",
        "ce_source": SOURCE.encode(),
        "ce_type": b"tongxin.request.submitted.v1",
        "content-type": CONTENT_TYPE.encode(),
    }
    headers.update(overrides)
    return list(headers.items())


# --- Envelope.wrap ---------------------------------------------------------------------------


def test_wrap_takes_type_key_subject_and_data_from_the_event() -> None:
    event = _submitted("req-42")

    env = Envelope.wrap(event, SOURCE, event_id="evt-42")

    assert env.id == "evt-42"
    assert env.type == "tongxin.request.submitted.v1"
    assert env.source == SOURCE
    assert env.key == "req-42"
    assert env.subject == "req-42"
    assert env.data == event.model_dump(mode="json")
    assert env.data["title"] == TITLE_ZH
    assert env.time.tzinfo is not None


def test_wrap_generates_a_fresh_id_when_none_is_given() -> None:
    event = _submitted()

    first = Envelope.wrap(event, SOURCE)
    second = Envelope.wrap(event, SOURCE)

    assert first.id and second.id
    assert first.id != second.id


# --- encode_record ---------------------------------------------------------------------------


def test_encode_uses_binary_mode_headers_key_and_json_value() -> None:
    when = datetime(2024, 5, 1, 9, 0, 0, 250000, tzinfo=UTC)
    env = Envelope(
        id="evt-1",
        type="tongxin.request.submitted.v1",
        source=SOURCE,
        key="req-001",
        subject="req-001",
        data={"title": TITLE_ZH, "n": 1},
        time=when,
    )

    key, value, headers = encode_record(env)

    assert key == b"req-001"
    hdrs = dict(headers)
    assert len(hdrs) == len(headers), "no header may appear twice"
    assert hdrs == {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-1",
        "ce_source": SOURCE.encode(),
        "ce_type": b"tongxin.request.submitted.v1",
        "ce_time": hdrs["ce_time"],
        "ce_subject": b"req-001",
        "content-type": b"application/json",
    }
    assert datetime.fromisoformat(hdrs["ce_time"].decode()) == when
    assert json.loads(value) == {"title": TITLE_ZH, "n": 1}


def test_encode_writes_chinese_text_as_utf8_not_ascii_escapes() -> None:
    env = Envelope.wrap(_submitted(), SOURCE, event_id="evt-1")

    _key, value, _headers = encode_record(env)

    assert TITLE_ZH.encode("utf-8") in value
    assert b"\\u" not in value


def test_encode_omits_subject_header_when_there_is_no_subject() -> None:
    env = Envelope(id="evt-1", type="t.v1", source=SOURCE, key="k", data={})

    _key, _value, headers = encode_record(env)

    assert "ce_subject" not in dict(headers)


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_of_a_wrapped_event_preserves_every_attribute() -> None:
    env = Envelope.wrap(_submitted("req-7"), SOURCE, event_id="evt-7")

    decoded = decode_record(*encode_record(env))

    assert decoded.id == "evt-7"
    assert decoded.type == "tongxin.request.submitted.v1"
    assert decoded.source == SOURCE
    assert decoded.subject == "req-7"
    assert decoded.key == "req-7"
    assert decoded.time == env.time
    assert decoded.data == env.data
    assert decoded.data["title"] == TITLE_ZH
    assert decoded.data["submitter"]["name"] == NAME_ZH
    assert decoded.data["attributes"] == {"楼层": 6, "tags": ["漏水", "老人"]}
    assert RequestSubmitted.model_validate(decoded.data) == _submitted("req-7")


def test_round_trip_keeps_a_non_utc_offset_and_microseconds() -> None:
    when = datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    env = Envelope(id="e", type="t.v1", source=SOURCE, key="k", data={"a": 1}, time=when)

    decoded = decode_record(*encode_record(env))

    assert decoded.time == when
    assert decoded.time.utcoffset() == timedelta(hours=8)


def test_decode_without_key_gives_an_empty_key() -> None:
    decoded = decode_record(None, b'{"a":1}', _valid_headers())

    assert decoded.key == ""
    assert decoded.data == {"a": 1}


def test_decode_without_time_header_defaults_to_now() -> None:
    before = datetime.now(UTC)

    decoded = decode_record(b"k", b"{}", _valid_headers())

    assert before <= decoded.time <= datetime.now(UTC)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


@settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=json_objects, key=st.text(min_size=1, max_size=20))
def test_round_trip_property_for_arbitrary_json_objects(data: dict[str, Any], key: str) -> None:
    env = Envelope(id="evt-p", type="tongxin.x.v1", source=SOURCE, key=key, subject=key, data=data)

    decoded = decode_record(*encode_record(env))

    assert decoded == env


# --- decode_record rejects poison ------------------------------------------------------------


@pytest.mark.parametrize("missing", REQUIRED_HEADERS)
def test_decode_rejects_a_missing_required_ce_header(missing: str) -> None:
    headers = [(k, v) for k, v in _valid_headers() if k != missing]

    with pytest.raises(InvalidEnvelope, match=missing):
        decode_record(b"k", b'{"a":1}', headers)


def test_decode_rejects_a_record_without_any_headers() -> None:
    with pytest.raises(InvalidEnvelope):
        decode_record(b"k", b'{"a":1}', [])


@pytest.mark.parametrize("value", [b"not json", b"{broken", b"\xff\xfe\x00"])
def test_decode_rejects_a_value_that_is_not_json(value: bytes) -> None:
    with pytest.raises(InvalidEnvelope, match="not JSON"):
        decode_record(b"k", value, _valid_headers())


@pytest.mark.parametrize("value", [b"[1,2]", b"null", b"42", b"true", b"", None])
def test_decode_rejects_json_that_is_not_an_object(value: bytes | None) -> None:
    with pytest.raises(InvalidEnvelope, match="JSON object"):
        decode_record(b"k", value, _valid_headers())


@pytest.mark.parametrize("content_type", [b"application/json", b"text/plain"])
def test_decode_rejects_a_json_string_that_contains_an_object(content_type: bytes) -> None:
    # Regression: the value is the JSON *string* "{\"smuggled\": 1}", not an object. The SDK
    # parses application/json data (giving a str here); it must not be parsed a second time.
    value = json.dumps('{"smuggled": 1}').encode()
    headers = _valid_headers(**{"content-type": content_type})

    with pytest.raises(InvalidEnvelope, match="JSON object"):
        decode_record(b"k", value, headers)


def test_decode_rejects_empty_required_attributes() -> None:
    headers = _valid_headers(ce_id=b"", ce_source=b"", ce_type=b"")

    with pytest.raises(InvalidEnvelope, match="not a CloudEvent"):
        decode_record(b"k", b"{}", headers)


def test_decode_rejects_an_unparseable_time() -> None:
    headers = [*_valid_headers(), ("ce_time", b"yesterday")]

    with pytest.raises(InvalidEnvelope, match="not a CloudEvent"):
        decode_record(b"k", b"{}", headers)


def test_decode_rejects_a_header_that_is_not_utf8() -> None:
    with pytest.raises(InvalidEnvelope):
        decode_record(b"k", b"{}", _valid_headers(ce_id=b"\xff\xfe"))


def test_invalid_envelope_is_a_value_error() -> None:
    # The consumer runner treats it as a poison record: not transient, parked at once.
    assert issubclass(InvalidEnvelope, ValueError)
