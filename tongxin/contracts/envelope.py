"""CloudEvents 1.0 binary mode over Kafka (SPEC §3), via the ``cloudevents`` SDK binding.

The record value is the JSON ``data``; attributes travel as ``ce_*`` headers plus
``content-type: application/json``; the record key is the request id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from tongxin.contracts.events import Event

CONTENT_TYPE = "application/json"


class InvalidEnvelope(ValueError):
    """A record that is not a well-formed Tongxin CloudEvent (a poison message)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One CloudEvent as it travels on a topic."""

    id: str
    type: str
    source: str
    key: str
    data: dict[str, Any]
    subject: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def wrap(cls, event: Event, source: str, event_id: str | None = None) -> Envelope:
        """Wrap an event model; the key and subject are its request id."""
        return cls(
            id=event_id or str(uuid.uuid4()),
            type=event.ce_type(),
            source=source,
            key=event.request_id,
            subject=event.request_id,
            data=event.model_dump(mode="json"),
        )


Headers = list[tuple[str, bytes]]


def encode_record(env: Envelope) -> tuple[bytes, bytes, Headers]:
    """Envelope → (key, value, headers) of a Kafka record in binary mode."""
    attrs: dict[str, Any] = {
        "specversion": "1.0",
        "id": env.id,
        "source": env.source,
        "type": env.type,
        "time": env.time,
        "datacontenttype": CONTENT_TYPE,
    }
    if env.subject:
        attrs["subject"] = env.subject
    value = json.dumps(env.data, ensure_ascii=False, separators=(",", ":")).encode()
    msg = ce_kafka.to_binary_event(CloudEvent(attrs, value), key_mapper=lambda _e: env.key)
    key = msg.key.encode() if isinstance(msg.key, str) else (msg.key or b"")
    return key, msg.value, list(msg.headers.items())


def decode_record(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | Iterable[Any]
) -> Envelope:
    """Kafka record → Envelope; raises InvalidEnvelope for anything malformed."""
    hdrs: dict[str, bytes] = {}
    for item in headers:
        name, raw = item
        hdrs[str(name)] = bytes(raw) if raw is not None else b""
    for required in ("ce_id", "ce_type", "ce_source", "ce_specversion"):
        if required not in hdrs:
            raise InvalidEnvelope(f"missing header {required}")
    if hdrs["ce_specversion"] != b"1.0":
        raise InvalidEnvelope("only CloudEvents specversion 1.0 is accepted")
    try:
        ev = ce_kafka.from_binary_event(
            ce_kafka.KafkaMessage(headers=hdrs, key=key, value=value or b"")
        )
    except Exception as exc:  # the SDK raises several exception types for bad input
        raise InvalidEnvelope(f"not a CloudEvent: {exc}") from exc
    # the value is parsed here, once: the SDK's data handling is not relied on for it
    if not value:
        raise InvalidEnvelope("data must be a JSON object, the value is empty")
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise InvalidEnvelope(f"data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEnvelope("data must be a JSON object")
    t = ev.get_time() or datetime.now(UTC)
    return Envelope(
        id=ev.get_id(),
        type=ev.get_type(),
        source=ev.get_source(),
        key=(key or b"").decode(errors="replace"),
        data=data,
        subject=ev.get_subject(),
        time=t,
    )
