"""Notify works in batches: a poll of events is planned in one unit of work (what an
earlier event tells is seen by a later one before anything committed), deliveries are
claimed in chunks never larger than their channel's concurrency, and a record parked for
its failed deliveries is retried — only those — by ``tongxin dlq replay``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notify.domain.delivery import Take
from tests.integration.notify.harness import (
    Notify,
    routed,
    running_notify,
    stack_settings,
    submitted,
    topic_of,
)
from tests.integration.notify.servers import Reply, ScriptedHTTP
from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import (
    CaseAcknowledged,
    Event,
    TaskAccepted,
)
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.consumer import mark_key
from tongxin.runtime.dlq import replay
from tongxin.runtime.kafka import contract_topics, ensure_topics, make_producer


@pytest.fixture
def sink() -> Iterator[ScriptedHTTP]:
    s = ScriptedHTTP(default=Reply()).start()  # 200 {"errcode": 0}: webhook and WeCom alike
    yield s
    s.stop()


def acknowledged(rid: str) -> CaseAcknowledged:
    return CaseAcknowledged(
        request_id=rid, case_id=f"C-{rid}", unit="community:liyuan", at=datetime.now(UTC)
    )


def accepted(rid: str) -> TaskAccepted:
    return TaskAccepted(
        request_id=rid,
        task_id=f"T-{rid}",
        case_id=f"C-{rid}",
        volunteer_id="vol:001",
        at=datetime.now(UTC),
    )


def uow_batches(n: Notify) -> tuple[float, float]:
    """(units of work committed through ``UnitOfWork.run``, inputs they carried)."""
    registry = n.app.state.metrics.registry
    count = registry.get_sample_value("tongxin_unit_of_work_inputs_count") or 0.0
    total = registry.get_sample_value("tongxin_unit_of_work_inputs_sum") or 0.0
    return count, total


async def test_a_batch_of_events_is_planned_in_one_unit_of_work(
    stack: LocalStack, sink: ScriptedHTTP
) -> None:
    settings = stack_settings(stack, notify_webhook_url=f"{sink.url}/hook")
    async with running_notify(settings) as n:
        rid, other = unique("YS-"), unique("YS-")
        # one request's life in one batch: the contact (request.submitted) and the case
        # (case.routed) reach the later events in memory — nothing of it committed yet
        events: list[Event] = [
            submitted(rid),
            routed(rid),
            acknowledged(rid),
            accepted(rid),
            routed(other),
        ]
        envs = [Envelope.wrap(e, "/tests") for e in events]
        before = uow_batches(n)
        decision = await n.service.on_events(envs)
        after = uow_batches(n)
        assert decision.outcomes == dict.fromkeys(range(len(envs)))  # all done
        # planned in one unit of work carrying the five events (sending records its
        # outcomes in transactions of its own, not through ``run``)
        assert (after[0] - before[0], after[1] - before[1]) == (1, len(envs))

        async def recipients(env: Envelope) -> set[str]:
            return {d["recipient"] for d in await n.deliveries(event_id=env.id)}

        assert f"submitter:{rid}" in await recipients(envs[2])  # acknowledged: the contact
        assert "community:liyuan" in await recipients(envs[3])  # accepted: the case's units
        staff = await n.deliveries(request_id=rid, recipient="staff:duty", status="sent")
        assert {d["event_type"] for d in staff} == {"case.routed", "task.accepted"}
        assert len(sink.matching(request_id=rid)) == 2
        [contact] = [d async for d in n.db.contacts.find({"_id": rid})]
        assert contact["phone"] == "13800001111"
        [case] = [d async for d in n.db.cases.find({"_id": f"C-{rid}"})]
        assert case["units"] == ["community:liyuan"]

        # the same batch again (a redelivery after a crash before its marks): nothing is
        # planned or sent twice
        planned = len(await n.deliveries(request_id=rid))
        again = await n.service.on_events(envs)
        assert again.outcomes == dict.fromkeys(range(len(envs)))
        assert len(sink.matching(request_id=rid)) == 2
        assert len(await n.deliveries(request_id=rid)) == planned


async def test_records_waiting_in_a_poll_are_planned_together(
    stack: LocalStack, sink: ScriptedHTTP
) -> None:
    settings = stack_settings(stack, notify_webhook_url=f"{sink.url}/hook")
    await ensure_topics(stack.bootstrap, contract_topics(settings.topic_prefix))
    rids = [unique("YS-") for _ in range(12)]
    producer = make_producer(stack.bootstrap, idempotence=settings.kafka_idempotence)
    await producer.start()
    try:  # on the topic before notify starts: its first polls find them waiting
        for rid in rids:
            key, value, headers = encode_record(Envelope.wrap(routed(rid), "/tests"))
            await producer.send(settings.topic(topic_of(routed(rid))), value, key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    async with running_notify(settings) as n:

        async def all_sent() -> bool:
            return len(await n.deliveries(recipient="staff:duty", status="sent")) == len(rids)

        await eventually(all_sent, timeout=30, what="every staff webhook sent")
        registry = n.app.state.metrics.registry
        labels = {"consumer": "notify.events"}
        polls = registry.get_sample_value("tongxin_consumer_batch_records_count", labels)
        records = registry.get_sample_value("tongxin_consumer_batch_records_sum", labels)
        assert records == len(rids)
        assert polls is not None and polls < len(rids), f"{polls} polls for {len(rids)}"


async def test_a_claimed_chunk_never_exceeds_the_channels_concurrency(
    stack: LocalStack,
) -> None:
    sink = ScriptedHTTP(default=Reply(200, b"ok", delay=0.2)).start()
    try:
        settings = stack_settings(
            stack, notify_webhook_url=f"{sink.url}/hook", notify_channel_concurrency={"webhook": 3}
        )
        async with running_notify(settings) as n:
            store = n.service.store
            claim = store.claim
            chunks: list[int] = []
            sending: list[int] = []

            async def counted(ids: Any, take: Take, owner: str, *a: Any, **kw: Any) -> int:
                taken = await claim(ids, take, owner, *a, **kw)
                chunks.append(len(ids))
                # claims of a channel come from its lane alone: right after one, the
                # deliveries this process holds ``sending`` are at their most
                sending.append(
                    await n.db.deliveries.count_documents(
                        {"status": "sending", "owner": owner, "channel": "webhook"}
                    )
                )
                return taken

            store.claim = counted  # type: ignore[method-assign]
            rids = [unique("YS-") for _ in range(10)]
            decision = await n.service.on_events(
                [Envelope.wrap(routed(rid), "/tests") for rid in rids]
            )
            assert decision.outcomes == dict.fromkeys(range(len(rids)))
            assert {rid: len(sink.matching(request_id=rid)) for rid in rids} == dict.fromkeys(
                rids, 1
            )
            assert sum(chunks) == len(rids)
            assert max(chunks) == 3, chunks  # chunks, not one claim per delivery
            assert max(sending) <= 3, sending
            assert len(chunks) < len(rids)
    finally:
        sink.stop()


async def test_a_replayed_event_retries_only_its_failed_deliveries(
    stack: LocalStack, sink: ScriptedHTTP
) -> None:
    settings = stack_settings(
        stack, notify_webhook_url=f"{sink.url}/hook", notify_wecom_url=f"{sink.url}/wecom"
    )
    async with running_notify(settings) as n:
        rid = unique("YS-")
        sink.script(rid, [Reply(404, b"no such hook")])  # the staff webhook, once
        env = await n.publish(routed(rid))
        cases = settings.topic("tongxin.cases.v1")

        async def parked() -> list[Any]:
            dlq = await read_topic(stack.bootstrap, f"{cases}.dlq", timeout=2)
            return [r for r in dlq if headers_of(r)["ce_id"] == env.id]

        [record] = await eventually(parked, what="parked for its failed delivery")
        assert "1 deliveries failed: staff:duty/webhook" in headers_of(record)["x-error"]
        [unit] = await n.deliveries(request_id=rid, recipient="community:liyuan")
        assert (unit["channel"], unit["status"]) == ("wecom", "sent")
        wecom = [h for h in sink.hits if h.path == "/wecom"]
        assert len(wecom) == 1

        producer = make_producer(stack.bootstrap, idempotence=settings.kafka_idempotence)
        await producer.start()
        try:
            assert len(await replay(stack.bootstrap, cases, producer)) == 1
        finally:
            await producer.stop()

        async def marked() -> bool:  # handled this time: its mark committed, not parked
            mark = {"consumer": "notify.events", "event_id": mark_key(env)}
            return await n.db.processed_events.count_documents(mark) == 1

        await eventually(marked, what="the replayed event handled")
        [staff] = await n.deliveries(request_id=rid, recipient="staff:duty")
        assert (staff["status"], staff["attempts"]) == ("sent", 2)
        assert [h.status for h in sink.matching(request_id=rid)] == [404, 200]
        assert len([h for h in sink.hits if h.path == "/wecom"]) == 1  # never resent
        assert len(await parked()) == 1

        async def outcomes() -> list[tuple[str, str, str]]:
            records = await read_topic(
                stack.bootstrap, settings.topic("tongxin.notifications.v1"), timeout=2
            )
            return sorted(
                (headers_of(r)["ce_type"].split(".")[2], *_who(json.loads(r.value)))
                for r in records
                if r.key == rid.encode()
            )

        async def all_three() -> list[tuple[str, str, str]] | None:
            got = await outcomes()
            return got if len(got) >= 3 else None

        assert await eventually(all_three, what="outcome events") == [
            ("failed", "staff:duty", "webhook"),
            ("sent", "community:liyuan", "wecom"),
            ("sent", "staff:duty", "webhook"),
        ]


def _who(data: dict[str, Any]) -> tuple[str, str]:
    return data["recipient"], data["channel"]
