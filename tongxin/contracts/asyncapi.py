"""Machine-readable contract documents generated from the models: AsyncAPI 3.0 and one
JSON Schema per event type. ``tongxin asyncapi`` prints the document; the checked-in copies
under ``docs/contracts/`` are kept fresh by a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tongxin.contracts.events import EVENT_MODELS, Event
from tongxin.contracts.topics import TOPICS, dlq_topic

CE_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary content mode",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "content-type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "unique per event; consumers dedupe on it"},
        "ce_source": {"type": "string", "examples": ["/tongxin/intake"]},
        "ce_type": {"type": "string", "examples": ["tongxin.case.routed.v1"]},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "the request id"},
        "content-type": {"type": "string", "const": "application/json"},
    },
}


def _message_name(model: type[Event]) -> str:
    return f"{model.event_type}.v{model.version}"


def event_schema(model: type[Event]) -> dict[str, Any]:
    """The JSON Schema of one event type's ``data``."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    schema["$id"] = f"https://tongxin.example/contracts/{model.ce_type()}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["x-ce-type"] = model.ce_type()
    return schema


def event_schemas() -> dict[str, dict[str, Any]]:
    """Every event type's schema by CloudEvents type."""
    return {ce_type: event_schema(m) for ce_type, m in sorted(EVENT_MODELS.items())}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document for every topic and event type."""
    by_type = {m.event_type: m for m in EVENT_MODELS.values()}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for topic in TOPICS:
        cid = topic.name.replace(".", "_").replace("-", "_")
        chan_messages: dict[str, Any] = {}
        for et in topic.event_types:
            model = by_type.get(et)
            if model is None:
                continue
            name = _message_name(model)
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, sub in schema.pop("$defs", {}).items():
                schemas.setdefault(def_name, sub)
            schemas[model.__name__] = schema
            messages[name] = {
                "name": model.ce_type(),
                "title": model.event_type,
                "summary": (model.__doc__ or "").strip().splitlines()[0],
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
                "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": "the request id"},
                        "bindingVersion": "0.5.0",
                    }
                },
            }
            chan_messages[name] = {"$ref": f"#/components/messages/{name}"}
        channels[cid] = {
            "address": topic.name,
            "title": topic.name,
            "description": f"Owner: {topic.owner}. Dead letters: {dlq_topic(topic.name)}.",
            "messages": chan_messages,
            "bindings": {
                "kafka": {
                    "topic": topic.name,
                    "partitions": topic.partitions,
                    "bindingVersion": "0.5.0",
                }
            },
        }
        action = "receive" if topic.owner in ("other platforms", "department systems") else "send"
        operations[f"{cid}_{action}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"{topic.owner} {'consumes' if action == 'receive' else 'publishes'}",
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in chan_messages],
        }
    schemas["CloudEventHeaders"] = CE_HEADERS_SCHEMA
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Tongxin 同心 event contract",
            "version": "1.0.0",
            "description": (
                "Topics of the Tongxin community governance platform. Every record is a "
                "CloudEvents 1.0 event in Kafka binary mode; the key is the request id."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "tongxin up",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def dumps(doc: Any) -> str:
    """Stable JSON text for checked-in files."""
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def write_contracts(out: Path) -> list[Path]:
    """Write ``asyncapi.json`` and ``schemas/<ce_type>.json`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "schemas").mkdir(exist_ok=True)
    written = [out / "asyncapi.json"]
    written[0].write_text(dumps(asyncapi_document()), encoding="utf-8")
    for ce_type, schema in event_schemas().items():
        path = out / "schemas" / f"{ce_type}.json"
        path.write_text(dumps(schema), encoding="utf-8")
        written.append(path)
    return written
