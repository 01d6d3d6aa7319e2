"""The inbound topic against real Kafka: validated like HTTP, deduplicated by
(ce_source, ce_id), invalid records parked on the DLQ with the reason at once."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.integration.intake.conftest import BODY, Intake
from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record

INBOUND = "tongxin.inbound.requests.v1"


async def send(intake: Intake, data: dict[str, Any], source: str, ce_id: str) -> None:
    env = Envelope(
        id=ce_id,
        type="tongxin.request.submitted.v1",
        source=source,
        key=ce_id,
        data=data,
        subject=ce_id,
    )
    key, value, headers = encode_record(env)
    await intake.producer.send_and_wait(
        intake.topic(INBOUND), value=value, key=key, headers=headers
    )


def hotline_body(**kw: Any) -> dict[str, Any]:
    return {
        **BODY,
        "channel": "hotline",
        "title": unique("12345来电"),
        "description": unique("市民来电反映"),
        "request_id": "HOTLINE-778899",  # their own fields are ignored
        "submitter": {**BODY["submitter"], "hotline_operator": "007"},
        **kw,
    }


async def test_inbound_request_is_stored_once_per_source_and_id(intake: Intake) -> None:
    source = unique("/12345/")
    ce_id = str(uuid.uuid4())
    body = hotline_body()
    for _ in range(3):
        await send(intake, body, source, ce_id)
    # the same ce_id from another platform is another request
    other_source = unique("/dept/")
    await send(intake, {**body, "title": unique("另一平台")}, other_source, ce_id)

    async def stored() -> list[dict[str, Any]]:
        docs = [d async for d in intake.db.requests.find({"external.id": ce_id})]
        return docs if len(docs) >= 2 else []

    docs = await eventually(stored, what="both inbound requests stored")
    by_source = {d["external"]["source"]: d for d in docs}
    assert set(by_source) == {source, other_source}
    doc = by_source[source]
    assert doc["channel"] == "hotline" and doc["status"] == "submitted"
    assert "request_id" not in doc

    # redeliveries were skipped: later records are handled, still one request per source
    marker = unique("标记")
    await send(intake, hotline_body(title=marker), source, str(uuid.uuid4()))
    await eventually(
        lambda: intake.db.requests.count_documents({"title": marker}), what="marker handled"
    )
    assert await intake.db.requests.count_documents({"external.source": source}) == 2

    rid = doc["_id"]
    submitted = await intake.records("tongxin.requests.v1", rid)
    assert submitted[0][1]["external_source"] == source
    assert submitted[0][1]["external_id"] == ce_id
    public = await intake.records("tongxin.public.status.v1", rid)
    assert public[0][1]["external_id"] == ce_id
    assert public[0][1]["channel"] == "hotline"


async def test_invalid_inbound_records_go_to_the_dlq_with_the_reason(intake: Intake) -> None:
    source = unique("/12345/")
    bad_phone = str(uuid.uuid4())
    bad_compound = str(uuid.uuid4())
    good = str(uuid.uuid4())
    await send(intake, hotline_body(submitter={"name": "王", "phone": "12"}), source, bad_phone)
    await send(intake, hotline_body(compound="compound:nowhere"), source, bad_compound)
    marker = unique("有效")
    await send(intake, hotline_body(title=marker), source, good)

    await eventually(
        lambda: intake.db.requests.count_documents({"title": marker}),
        what="the valid record after the invalid ones was handled",
    )

    async def parked() -> dict[str, dict[str, str]]:
        recs = await read_topic(
            intake.stack.bootstrap, intake.topic(INBOUND + ".dlq"), min_count=0, timeout=3
        )
        out = {headers_of(r)["ce_id"]: headers_of(r) for r in recs}
        return out if {bad_phone, bad_compound} <= set(out) else {}

    dlq = await eventually(parked, timeout=30, what="invalid records parked")
    assert "data.submitter.phone" in dlq[bad_phone]["x-error"]
    assert dlq[bad_phone]["x-attempts"] == "1"  # parked at once, not retried
    assert "data.compound" in dlq[bad_compound]["x-error"]
    assert dlq[bad_compound]["x-consumer"] == "intake.inbound"
    assert await intake.db.requests.count_documents({"external.id": bad_phone}) == 0

    metrics = (await intake.http.get("/metrics")).text
    assert 'tongxin_requests_rejected_total{source="inbound"}' in metrics


async def test_non_json_inbound_record_is_parked(intake: Intake) -> None:
    ce_id = str(uuid.uuid4())
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_source", b"/broken"),
        ("ce_type", b"tongxin.request.submitted.v1"),
        ("content-type", b"application/json"),
    ]
    await intake.producer.send_and_wait(
        intake.topic(INBOUND), value=b"{not json", key=b"k", headers=headers
    )

    async def parked() -> bool:
        recs = await read_topic(
            intake.stack.bootstrap, intake.topic(INBOUND + ".dlq"), min_count=0, timeout=3
        )
        return any(headers_of(r).get("ce_id") == ce_id for r in recs)

    assert await eventually(parked, timeout=30, what="non-JSON record parked")
    assert json.dumps(ce_id)  # (the id is what we looked for)
