"""Notify on real Kafka and SecantusDB, delivering to real local HTTP servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notify.channels import verify
from services.notify.domain.quiet import SHANGHAI
from tests.integration.notify.harness import (
    Notify,
    routed,
    running_notify,
    stack_settings,
    submitted,
)
from tests.integration.notify.servers import Reply, ScriptedHTTP
from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope, encode_record
from tongxin.contracts.events import (
    CaseEscalated,
    TaskOffered,
)
from tongxin.devstack.stack import LocalStack

SECRET = "webhook-secret-for-tests"


def offered(rid: str) -> TaskOffered:
    return TaskOffered(
        request_id=rid,
        task_id=f"T-{rid}",
        case_id=f"C-{rid}",
        volunteer_id="vol:001",
        volunteer_name="李红梅",
        skill="elder_care",
        accept_by=datetime.now(UTC) + timedelta(minutes=30),
    )


def escalated(rid: str) -> CaseEscalated:
    now = datetime.now(UTC)
    return CaseEscalated(
        request_id=rid,
        case_id=f"C-{rid}",
        unit="community:liyuan",
        at=now,
        from_level="community",
        to_level="town",
        to_unit="town:yongbei",
        reason="响应超时",
        deadline=now + timedelta(hours=1),
    )


@pytest.fixture(scope="module")
def sink() -> Iterator[ScriptedHTTP]:
    s = ScriptedHTTP(default=Reply(200, b"ok")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
async def notify(stack: LocalStack, sink: ScriptedHTTP) -> AsyncIterator[Notify]:
    settings = stack_settings(
        stack,
        notify_webhook_url=f"{sink.url}/hook",
        notify_webhook_secret=SECRET,
        notify_channel_timeouts={"webhook": 0.5},
    )
    async with running_notify(settings) as n:
        yield n


async def staff_delivery(n: Notify, rid: str, status: str) -> dict[str, Any] | None:
    docs = await n.deliveries(request_id=rid, recipient="staff:duty", status=status)
    return docs[0] if docs else None


async def test_staff_webhook_gets_a_signed_message_and_notification_sent_is_emitted(
    notify: Notify, sink: ScriptedHTTP, stack: LocalStack
) -> None:
    rid = unique("YS-")
    env = await notify.publish(routed(rid))
    [hit] = await eventually(lambda: _async(sink.matching(request_id=rid)), what="webhook hit")
    body = hit.json()
    assert body["event_type"] == "case.routed" and body["event_id"] == env.id
    assert body["recipient"] == "staff:duty" and "梨园社区" in body["text"]
    assert verify(
        SECRET, hit.headers["x-tongxin-timestamp"], hit.body, hit.headers["x-tongxin-signature"]
    )
    doc = await eventually(lambda: staff_delivery(notify, rid, "sent"), what="delivery sent")
    assert doc["attempts"] == 1
    # the unit heard of it too (console in this deployment: no WeCom/e-mail configured)
    [unit] = await eventually(
        lambda: notify.deliveries(request_id=rid, recipient="community:liyuan", status="sent")
    )
    assert unit["channel"] == "console"
    topic = notify.settings.topic("tongxin.notifications.v1")
    records = await read_topic(stack.bootstrap, topic, min_count=2)
    mine = [r for r in records if r.key == rid.encode()]
    assert {headers_of(r)["ce_type"] for r in mine} == {"tongxin.notification.sent.v1"}
    sent = [json.loads(r.value) for r in mine]
    assert {(s["recipient"], s["channel"]) for s in sent} == {
        ("staff:duty", "webhook"),
        ("community:liyuan", "console"),
    }
    assert all(s["source_event_id"] == env.id for s in sent)


async def test_500_then_200_is_exactly_one_successful_delivery(
    notify: Notify, sink: ScriptedHTTP, stack: LocalStack
) -> None:
    rid = unique("YS-")
    sink.script(rid, [Reply(500, b"busy"), Reply(200, b"ok")])
    await notify.publish(routed(rid))
    doc = await eventually(lambda: staff_delivery(notify, rid, "sent"), what="delivered")
    assert doc["attempts"] == 2
    hits = sink.matching(request_id=rid)
    assert [h.status for h in hits] == [500, 200]
    assert len({h.json()["notification_id"] for h in hits}) == 1  # the same message, resent

    async def staff_sent() -> list[str]:
        # the event is published after the commit that recorded the delivery sent
        records = await read_topic(
            stack.bootstrap, notify.settings.topic("tongxin.notifications.v1"), min_count=1
        )
        mine = [json.loads(r.value) for r in records if r.key == rid.encode()]
        return [m["channel"] for m in mine if m["recipient"] == "staff:duty"]

    assert await eventually(staff_sent, what="notification.sent published") == ["webhook"]
    metrics = (await notify.http.get("/metrics")).text
    assert 'tongxin_notification_retries_total{channel="webhook"}' in metrics


async def test_a_4xx_is_not_retried_and_ends_in_notification_failed_and_the_dlq(
    notify: Notify, sink: ScriptedHTTP, stack: LocalStack
) -> None:
    rid = unique("YS-")
    sink.script(rid, [Reply(404, b"no such hook")])
    env = await notify.publish(routed(rid))
    doc = await eventually(lambda: staff_delivery(notify, rid, "failed"), what="failed")
    assert doc["attempts"] == 1 and "404" in doc["last_error"]
    assert len(sink.matching(request_id=rid)) == 1
    records = await read_topic(
        stack.bootstrap, notify.settings.topic("tongxin.notifications.v1"), min_count=1
    )
    failed = [
        json.loads(r.value)
        for r in records
        if r.key == rid.encode() and headers_of(r)["ce_type"] == "tongxin.notification.failed.v1"
    ]
    assert [(f["recipient"], f["attempts"]) for f in failed] == [("staff:duty", 1)]
    dlq = await read_topic(
        stack.bootstrap, notify.settings.topic("tongxin.cases.v1.dlq"), min_count=1
    )
    parked = [r for r in dlq if headers_of(r)["ce_id"] == env.id]
    assert len(parked) == 1
    assert "deliveries failed" in headers_of(parked[0])["x-error"]
    # the consumer is not stuck: the next event is delivered
    nxt = unique("YS-")
    await notify.publish(routed(nxt))
    await eventually(lambda: staff_delivery(notify, nxt, "sent"), what="next delivered")


async def test_a_hanging_webhook_is_a_failed_attempt_then_delivered(
    notify: Notify, sink: ScriptedHTTP
) -> None:
    rid = unique("YS-")
    sink.script(rid, [Reply(200, b"", delay=2.0), Reply(200, b"ok")])
    await notify.publish(routed(rid))
    doc = await eventually(lambda: staff_delivery(notify, rid, "sent"), timeout=20, what="sent")
    assert doc["attempts"] == 2
    assert "timed out" in doc["last_error"]


async def test_a_redelivered_event_sends_nothing_twice(notify: Notify, sink: ScriptedHTTP) -> None:
    rid = unique("YS-")
    env = Envelope.wrap(routed(rid), "/tests")
    key, value, headers = encode_record(env)
    topic = notify.settings.topic("tongxin.cases.v1")
    for _ in range(3):
        await notify.producer.send_and_wait(topic, value=value, key=key, headers=headers)
    await eventually(lambda: staff_delivery(notify, rid, "sent"), what="sent")
    marker = unique("YS-")
    await notify.publish(routed(marker))  # once this is through, the duplicates were handled
    await eventually(lambda: staff_delivery(notify, marker, "sent"), what="marker sent")
    assert len(sink.matching(request_id=rid)) == 1
    assert len(await notify.deliveries(request_id=rid)) == 2  # staff webhook + unit console


async def test_submitter_contact_is_kept_and_used_for_later_messages(notify: Notify) -> None:
    rid = unique("YS-")
    await notify.publish(submitted(rid))
    [doc] = await eventually(
        lambda: notify.deliveries(request_id=rid, recipient=f"submitter:{rid}")
    )
    # no SMS gateway here: the console fallback, but the phone number was kept for SMS
    assert doc["channel"] == "console" and doc["address"] == {"phone": "13800001111"}
    assert "张三" in doc["message"]["text"]
    r = await notify.http.get(f"/v1/preferences/submitter:{rid}", headers=notify.token())
    assert r.status_code == 200 and r.json()["channels"] == ["sms"]


async def test_an_invalid_event_is_parked_at_once(notify: Notify, stack: LocalStack) -> None:
    rid = unique("YS-")
    env = Envelope(
        id=unique("bad-"),
        type="tongxin.case.routed.v1",
        source="/tests",
        key=rid,
        data={"request_id": rid},
    )
    key, value, headers = encode_record(env)
    await notify.producer.send_and_wait(
        notify.settings.topic("tongxin.cases.v1"), value=value, key=key, headers=headers
    )
    dlq = await eventually(
        lambda: _parked(stack, notify.settings.topic("tongxin.cases.v1.dlq"), env.id),
        what="parked",
    )
    assert headers_of(dlq[0])["x-attempts"] == "1"
    assert await notify.deliveries(request_id=rid) == []


async def _parked(stack: LocalStack, topic: str, event_id: str) -> list[Any]:
    return [
        r
        for r in await read_topic(stack.bootstrap, topic, timeout=2)
        if headers_of(r)["ce_id"] == event_id
    ]


async def _async(value: Any) -> Any:
    return value


async def test_quiet_hours_defer_a_routine_message_and_not_an_escalation(
    stack: LocalStack,
) -> None:
    sink = ScriptedHTTP(default=Reply(200, b"ok")).start()
    try:
        settings = stack_settings(stack, notify_webhook_url=f"{sink.url}/hook")
        async with running_notify(settings) as n:
            # the consumer is up and assigned before the window starts counting
            warm = unique("YS-")
            await n.publish(routed(warm))
            await eventually(lambda: staff_delivery(n, warm, "sent"), what="warmed up")
            now = datetime.now(SHANGHAI)
            start = (now - timedelta(hours=1)).strftime("%H:%M:%S")
            end = (now + timedelta(seconds=8)).strftime("%H:%M:%S")
            r = await n.http.put(
                "/v1/preferences/staff:duty",
                json={"channels": ["webhook"], "quiet_hours": {"start": start, "end": end}},
                headers=n.token(),
            )
            assert r.status_code == 200, r.text
            routine, urgent = unique("YS-"), unique("YS-")
            await n.publish(offered(routine))
            await n.publish(escalated(urgent))
            await eventually(
                lambda: _async(sink.matching(request_id=urgent)), what="escalation sent"
            )
            deferred = await eventually(
                lambda: staff_delivery(n, routine, "deferred"), what="deferred"
            )
            assert sink.matching(request_id=routine) == []
            assert deferred["not_before"].astimezone(SHANGHAI).strftime("%H:%M:%S") == end
            listed = await n.http.get(
                "/v1/notifications",
                params={"request_id": routine, "recipient": "staff:duty"},
                headers=n.token(),
            )
            assert [x["status"] for x in listed.json()] == ["deferred"]
            # durable: the deadline lives in the database
            assert (
                await n.db.deadlines.count_documents(
                    {"subject": deferred["_id"], "status": "pending"}
                )
                == 1
            )
            [hit] = await eventually(
                lambda: _async(sink.matching(request_id=routine)), timeout=20, what="released"
            )
            assert hit.json()["event_type"] == "task.offered"
            sent = await eventually(lambda: staff_delivery(n, routine, "sent"), what="marked sent")
            assert sent["sent_at"] >= deferred["not_before"]
    finally:
        sink.stop()
