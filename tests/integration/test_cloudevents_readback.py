"""Every contract event type, published through the outbox to real Kafka, reads back with
the CloudEvents SDK's own Kafka binding — what an integrator's consumer would use.

Each (topic, type) pair of ``tongxin/contracts/topics.py`` gets one event built from its
model's JSON Schema (every field filled), wrapped in an :class:`Envelope`, written to the
outbox in a transaction and published by the relay. The records are then read with a plain
aiokafka consumer and parsed by ``cloudevents.v1.kafka.from_binary`` (the SDK's classic
binding, ``cloudevents.kafka`` before 2.0) and by the core binding's ``from_binary_event``,
without any Tongxin code on the read side.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import kafka as ce_core_kafka
from cloudevents.v1 import kafka as ce_kafka
from pymongo import AsyncMongoClient

from tests.support import read_topic, unique
from tongxin.contracts.envelope import Envelope
from tongxin.contracts.events import EVENT_MODELS, Event
from tongxin.contracts.topics import TOPICS
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.kafka import ensure_topics
from tongxin.runtime.mongo import Doc, ensure_indexes
from tongxin.runtime.outbox import OUTBOX_INDEXES, KafkaPublisher, MongoOutbox, OutboxRelay
from tongxin.runtime.uow import Effects, UnitOfWork

SOURCE = "/tongxin/readback-test"
PAIRS = [(t.name, f"tongxin.{short}.v1") for t in TOPICS for short in t.event_types]


def _sample(schema: dict[str, Any], defs: dict[str, Any], name: str) -> Any:
    """A value valid for ``schema`` (the subset pydantic emits for the event models)."""
    if "$ref" in schema:
        return _sample(defs[schema["$ref"].rsplit("/", 1)[1]], defs, name)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _sample(options[0], defs, name)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][-1]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties")
        if props is None:  # a free-form mapping
            return {"k": "v"} if schema.get("additionalProperties", True) is True else {}
        return {k: _sample(v, defs, k) for k, v in props.items()}
    if kind == "array":
        return [_sample(schema.get("items", {"type": "string"}), defs, name)]
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2026-05-01T08:00:00Z"
        return f"{name}-值"
    if kind == "integer":
        return 2
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    raise AssertionError(f"no sample for {name}: {schema}")


def sample_event(ce_type: str) -> Event:
    model = EVENT_MODELS[ce_type]
    schema = model.model_json_schema()
    data = _sample(schema, schema.get("$defs", {}), model.__name__)
    return model.model_validate(data)


def _types_of(topic: str) -> set[str]:
    return {ce_type for name, ce_type in PAIRS if name == topic}


def test_a_sample_exists_for_every_contract_type() -> None:
    assert len(PAIRS) >= len(EVENT_MODELS)
    assert {t for _, t in PAIRS} == set(EVENT_MODELS)
    for _, ce_type in PAIRS:
        assert sample_event(ce_type).ce_type() == ce_type


async def test_every_event_type_round_trips_through_the_cloudevents_kafka_binding(
    stack: LocalStack, clients: tuple[AsyncMongoClient[Doc], AIOKafkaProducer]
) -> None:
    client, producer = clients
    db = client[unique("it_ce_")]
    await ensure_indexes(db, OUTBOX_INDEXES)
    prefix = unique("ce.") + "."
    await ensure_topics(stack.bootstrap, [(prefix + t.name, 2) for t in TOPICS])
    outbox = MongoOutbox(db, prefix)

    sent: dict[str, tuple[str, Envelope]] = {}  # ce_id → (topic, envelope)
    for topic, ce_type in PAIRS:
        env = Envelope.wrap(sample_event(ce_type), SOURCE)
        sent[env.id] = (topic, env)

    fx = Effects()
    for topic, env in sent.values():
        fx.emit(topic, env)
    await UnitOfWork(client, db.name, outbox).commit(fx)
    relay = OutboxRelay(outbox, KafkaPublisher(producer))
    assert await relay.relay_once() == len(sent)

    seen: set[str] = set()
    for t in TOPICS:
        wanted = [e for topic, e in sent.values() if topic == t.name]
        records = await read_topic(stack.bootstrap, prefix + t.name, min_count=len(wanted))
        assert len(records) == len(wanted), t.name
        for rec in records:
            message = ce_kafka.KafkaMessage(
                headers={k: v for k, v in rec.headers}, key=rec.key, value=rec.value
            )
            ce = ce_kafka.from_binary(message)
            topic, env = sent[ce["id"]]
            assert topic == t.name
            assert ce["specversion"] == "1.0"
            assert ce["type"] == env.type and ce["type"] in _types_of(t.name)
            assert ce["source"] == SOURCE
            assert ce["subject"] == env.key
            assert ce["datacontenttype"] == "application/json"
            assert ce["partitionkey"] == env.key.encode()
            assert datetime.fromisoformat(ce["time"]).astimezone(UTC) == env.time
            assert ce.data == env.data  # the SDK's JSON unmarshaller
            # the model on the other side accepts what came back
            assert EVENT_MODELS[ce["type"]].model_validate(ce.data).model_dump(mode="json") == (
                env.data
            )
            # the 2.x core binding reads the same event
            core = ce_core_kafka.from_binary_event(
                ce_core_kafka.KafkaMessage(headers=message.headers, key=rec.key, value=rec.value)
            )
            assert (core.get_id(), core.get_type(), core.get_source()) == (
                env.id,
                env.type,
                SOURCE,
            )
            core_data = core.get_data()
            if isinstance(core_data, bytes | str):
                core_data = json.loads(core_data)
            assert core_data == env.data
            seen.add(ce["id"])
    assert seen == set(sent)
