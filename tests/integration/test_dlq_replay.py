"""`tongxin dlq replay`: a parked record goes back on its topic once, and is handled."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

from tests.support import headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import RequestSubmitted, Submitter
from tongxin.contracts.topics import dlq_topic
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.consumer import dlq_headers
from tongxin.runtime.dlq import pending_counts
from tongxin.runtime.kafka import ensure_topics, make_producer


def cli(stack: LocalStack, *args: str) -> str:
    env = {**os.environ, **stack.service_env()}
    out = subprocess.run(
        [sys.executable, "-m", "tongxin.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


async def test_replay_puts_parked_records_back_once(stack: LocalStack) -> None:
    topic = unique("it.replay.")
    await ensure_topics(stack.bootstrap, [(topic, 1), (dlq_topic(topic), 1)])
    env = Envelope.wrap(
        RequestSubmitted(
            request_id="YS-R1",
            channel="platform",
            category="sanitation",
            title="垃圾清运",
            description="垃圾清运不及时",
            community="community:liyuan",
            submitter=Submitter(name="王五"),
            submitted_at=datetime.now(UTC),
        ),
        "/tests",
    )
    key, value, headers = encode_record(env)
    producer = make_producer(stack.bootstrap, idempotence=stack.broker_kind != "tansu")
    await producer.start()
    try:
        await producer.send_and_wait(
            dlq_topic(topic),
            value=value,
            key=key,
            headers=dlq_headers(headers, "ValueError: db index missing", 5, "routing.requests"),
        )
    finally:
        await producer.stop()

    assert await pending_counts(stack.bootstrap, [topic]) == {dlq_topic(topic): 1}
    listed = cli(stack, "dlq", "list", topic)
    assert "ValueError: db index missing" in listed and "1 record(s)" in listed
    assert "1 record(s) replayed" in cli(stack, "dlq", "replay", topic)
    assert "0 record(s) replayed" in cli(stack, "dlq", "replay", topic)  # not twice
    assert "0 record(s)" in cli(stack, "dlq", "list", topic)
    assert await pending_counts(stack.bootstrap, [topic]) == {dlq_topic(topic): 0}

    back = await read_topic(stack.bootstrap, topic, min_count=1)
    assert len(back) == 1
    h = headers_of(back[0])
    assert back[0].value == value and back[0].key == key
    assert h["ce_id"] == env.id and h["x-replayed"] == "1"
    assert not {"x-error", "x-attempts", "x-consumer"} & set(h)
