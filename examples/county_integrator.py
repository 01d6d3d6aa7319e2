#!/usr/bin/env python3
"""A county platform integrating with Tongxin 同心 over Kafka — using only the contract.

It needs nothing from Tongxin's code: ``pip install aiokafka cloudevents``. It does the two
things an outside platform (the 12345 hotline, a department's ticket system) does:

* ``submit`` — send a resident's request to ``tongxin.inbound.requests.v1`` as a CloudEvent
  in Kafka binary mode (attributes in ``ce_*`` headers, JSON ``data`` as the value).
  Tongxin deduplicates by (``ce_source``, ``ce_id``): resending the same event is harmless,
  so use your own ticket id as ``ce_id``.
* ``watch`` — follow ``tongxin.public.status.v1`` and print every status change. Records are
  masked (no name, no street address, phone ``138****1234``); your own requests carry your
  ``ce_source``/``ce_id`` back as ``external_source``/``external_id``.

Against ``make up`` (Kafka on 127.0.0.1:9092)::

    python examples/county_integrator.py watch --from-beginning &
    python examples/county_integrator.py submit --source /county/12345 --id T-20260501-0001

Contract: docs/integration.md and docs/contracts/asyncapi.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

try:  # cloudevents >= 2.0 keeps the classic API under cloudevents.v1
    from cloudevents.v1.http import CloudEvent
    from cloudevents.v1.kafka import KafkaMessage, from_binary, to_binary
except ImportError:  # cloudevents 1.x
    from cloudevents.http import CloudEvent  # type: ignore[no-redef]
    from cloudevents.kafka import KafkaMessage, from_binary, to_binary  # type: ignore[no-redef]

INBOUND_TOPIC = "tongxin.inbound.requests.v1"
STATUS_TOPIC = "tongxin.public.status.v1"
SUBMITTED_TYPE = "tongxin.request.submitted.v1"
STATUS_TYPE = "tongxin.request.status.v1"

# The shape of Tongxin's POST /v1/requests (docs/intake.md); unknown fields are ignored.
EXAMPLE_REQUEST: dict[str, Any] = {
    "channel": "hotline",
    "category": "public_facilities",
    "title": "路灯不亮",
    "description": "市民来电：梨园佳苑3栋门口路灯坏了一个多星期，晚上出行不便。",
    "community": "community:liyuan",
    "compound": "compound:liyuan-jiayuan",
    "submitter": {"name": "张秀英", "phone": "13812341234"},
    "attributes": {"facility": "street_light"},
}


def request_event(data: dict[str, Any], source: str, event_id: str | None = None) -> CloudEvent:
    """A ``request.submitted`` CloudEvent; ``event_id`` is your ticket id (the dedupe key)."""
    return CloudEvent(
        {
            "type": SUBMITTED_TYPE,
            "source": source,
            "id": event_id or str(uuid.uuid4()),
            "datacontenttype": "application/json",
        },
        data,
    )


def to_record(event: CloudEvent) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the event in binary mode; the key is the event id."""
    msg = to_binary(
        event,
        data_marshaller=lambda d: json.dumps(d, ensure_ascii=False),
        key_mapper=lambda e: e["id"],
    )
    key = msg.key.encode() if isinstance(msg.key, str) else (msg.key or b"")
    value = msg.value.encode() if isinstance(msg.value, str) else msg.value
    return key, value, list(msg.headers.items())


async def submit(
    bootstrap: str, prefix: str, data: dict[str, Any], source: str, event_id: str | None = None
) -> str:
    """Publish one request on the inbound topic and wait for the broker's ack; its ce_id."""
    event = request_event(data, source, event_id)
    key, value, headers = to_record(event)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(prefix + INBOUND_TOPIC, value=value, key=key, headers=headers)
    finally:
        await producer.stop()
    return str(event["id"])


@dataclass(frozen=True)
class StatusChange:
    """One record of the public status topic, as an integrator sees it."""

    request_id: str
    status: str
    previous_status: str | None
    changed_at: str
    external_source: str | None
    external_id: str | None
    data: dict[str, Any]
    event: CloudEvent

    def line(self) -> str:
        """A one-line summary for the console."""
        mine = f"  [{self.external_source} {self.external_id}]" if self.external_id else ""
        before = self.previous_status or "—"
        return (
            f"{self.changed_at}  {self.request_id}  {before} → {self.status}"
            f"  {self.data.get('category', '')} {self.data.get('community', '')}{mine}"
        )


def parse_status(
    key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
) -> StatusChange | None:
    """A public status record → :class:`StatusChange` (None for other event types)."""
    event = from_binary(KafkaMessage(headers=dict(headers), key=key, value=value))
    if event["type"] != STATUS_TYPE:  # consumers ignore types they do not know
        return None
    raw = event.get_data()
    data = json.loads(raw) if isinstance(raw, bytes | str) else raw
    if not isinstance(data, dict):
        raise ValueError(f"{event['id']}: data is not a JSON object")
    return StatusChange(
        request_id=data["request_id"],
        status=data["status"],
        previous_status=data.get("previous_status"),
        changed_at=data["changed_at"],
        external_source=data.get("external_source"),
        external_id=data.get("external_id"),
        data=data,
        event=event,
    )


async def watch_status(
    bootstrap: str,
    prefix: str,
    on_change: Callable[[StatusChange], Awaitable[bool] | bool],
    *,
    group: str | None = None,
    from_beginning: bool = False,
) -> None:
    """Follow the public status topic; stops when ``on_change`` returns True.

    With a ``group`` the position is committed, so a restart continues where it stopped.
    """
    consumer = AIOKafkaConsumer(
        prefix + STATUS_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group is not None,
    )
    await consumer.start()
    try:
        async for rec in consumer:
            change = parse_status(rec.key, rec.value or b"", list(rec.headers))
            if change is None:
                continue
            done = on_change(change)
            if not isinstance(done, bool):
                done = await done
            if done:
                return
    finally:
        await consumer.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument(
        "--topic-prefix", default="", help="prefix of every topic name (empty in production)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="send one request to tongxin.inbound.requests.v1")
    s.add_argument("--source", default="/county/12345", help="your platform's ce_source")
    s.add_argument("--id", dest="event_id", help="your ticket id as ce_id (default: a UUID)")
    s.add_argument("--data", help="JSON file with the request (default: a built-in example)")
    w = sub.add_parser("watch", help="print status changes from tongxin.public.status.v1")
    w.add_argument("--from-beginning", action="store_true", help="replay the whole topic")
    w.add_argument("--group", help="consumer group (commit the position across restarts)")
    w.add_argument("--count", type=int, default=0, help="stop after N status changes")
    return parser


async def run(args: argparse.Namespace, data: dict[str, Any]) -> int:
    if args.command == "submit":
        ce_id = await submit(args.bootstrap, args.topic_prefix, data, args.source, args.event_id)
        print(f"submitted ce_source={args.source} ce_id={ce_id}", flush=True)
        return 0
    seen = 0

    def show(change: StatusChange) -> bool:
        nonlocal seen
        seen += 1
        print(change.line(), flush=True)
        return bool(args.count) and seen >= args.count

    await watch_status(
        args.bootstrap,
        args.topic_prefix,
        show,
        group=args.group,
        from_beginning=args.from_beginning,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data = EXAMPLE_REQUEST
    if getattr(args, "data", None):
        with open(args.data, encoding="utf-8") as f:
            data = json.load(f)
    try:
        return asyncio.run(run(args, data))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
