"""A process that dies leaves deliveries behind: notify resumes the known-undelivered ones
exactly once (also with two replicas sweeping), and never resends one cut mid-attempt.

The crash is simulated deterministically: the documents a dead process leaves are written
as it would have left them (``retrying`` between attempts with its lease run out, ``pending``
never attempted, ``sending`` in flight), then notify starts on that database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.notify.config import NotifySettings
from services.notify.domain.delivery import delivery_id, notification_id
from tests.integration.notify.harness import Sweeps, routed, running_notify, stack_settings
from tests.integration.notify.servers import Reply, ScriptedHTTP
from tests.support import eventually, headers_of, read_topic, unique
from tongxin.contracts.envelope import Envelope
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc, make_client

DEAD = "notify-dead0000"  # the owner id of the process that was killed
ALIVE = "notify-alive000"  # another replica, still running


@pytest.fixture
def sink() -> Iterator[ScriptedHTTP]:
    s = ScriptedHTTP(default=Reply(200, b"ok")).start()
    yield s
    s.stop()


def fast(stack: LocalStack, sink: ScriptedHTTP) -> NotifySettings:
    return stack_settings(
        stack,
        notify_webhook_url=f"{sink.url}/hook",
        notify_delivery_lease_s=1.0,
        notify_sweep_interval_s=0.2,
    )


def left_behind(rid: str, status: str, event_id: str | None = None, **kw: Any) -> Doc:
    """A staff webhook delivery of a case.routed as a killed process leaves it."""
    now = datetime.now(UTC)
    event_id = event_id or unique("ev-")
    did = delivery_id(event_id, "staff:duty", "webhook")
    return {
        "_id": did,
        "notification_id": notification_id(did),
        "event_id": event_id,
        "event_type": "case.routed",
        "request_id": rid,
        "case_id": f"C-{rid}",
        "recipient": "staff:duty",
        "recipient_name": "县级平台值班人员",
        "recipient_kind": "staff",
        "staff": True,
        "channel": "webhook",
        "template": "case_routed",
        "critical": False,
        "fallback": False,
        "markdown": False,
        "message": {"title": "新案件", "text": f"案件 C-{rid} 已分派", "sms_params": {}},
        "address": {},
        "status": status,
        "not_before": None,
        "attempts": 0,
        "created_at": now - timedelta(minutes=1),
        "updated_at": now - timedelta(minutes=1),
        "lease_until": now - timedelta(seconds=5),
        **kw,
    }


async def _sent_events(stack: LocalStack, settings: NotifySettings, rid: str) -> list[Any]:
    records = await read_topic(
        stack.bootstrap, settings.topic("tongxin.notifications.v1"), timeout=2
    )
    return [
        json.loads(r.value)
        for r in records
        if r.key == rid.encode() and headers_of(r)["ce_type"] == "tongxin.notification.sent.v1"
    ]


async def test_deliveries_a_killed_process_left_open_are_resumed_exactly_once(
    stack: LocalStack, sink: ScriptedHTTP
) -> None:
    settings = fast(stack, sink)
    between, planned, in_flight, held = (unique("YS-") for _ in range(4))
    docs = [
        # between attempts: the dead process would have retried; its lease ran out
        left_behind(
            between,
            "retrying",
            owner=DEAD,
            attempts=1,
            last_error="webhook: HTTP 503",
            next_attempt_at=datetime.now(UTC) - timedelta(seconds=6),
        ),
        # planned, never attempted (the handler died before its turn under the limit)
        left_behind(planned, "pending"),
        # cut mid-attempt: it may have gone out, so it is never sent again
        left_behind(in_flight, "sending", owner=DEAD, attempts=1),
        # between attempts on a replica that is alive and holds its lease
        left_behind(
            held,
            "retrying",
            owner=ALIVE,
            attempts=1,
            lease_until=datetime.now(UTC) + timedelta(hours=1),
        ),
    ]
    mongo: AsyncMongoClient[Doc] = make_client(settings.mongodb_uri)
    try:
        await mongo[settings.db_name("notify")].deliveries.insert_many(docs)
        async with running_notify(settings) as n:
            sweeps = Sweeps.watch(n)
            for rid in (between, planned):
                sent = await eventually(
                    lambda rid=rid: n.deliveries(request_id=rid, status="sent"),
                    what=f"{rid} resumed",
                )
                assert sent[0]["attempts"] == (2 if rid == between else 1)
                assert len(sink.matching(request_id=rid)) == 1
            # several more sweeps ran after both were sent: none found them open again, so
            # none started on them (nothing is taken twice)
            later = await sweeps.more(3)
            ids = {d["_id"] for d in docs}
            assert [found & ids for found in later] == [set(), set(), set()]
            # no sweep at all found the one cut mid-attempt or the one a live replica holds
            untouchable = {docs[2]["_id"], docs[3]["_id"]}
            assert all(not (found & untouchable) for found in sweeps.found)
            for rid in (between, planned):
                assert len(sink.matching(request_id=rid)) == 1
                assert (
                    len(await eventually(lambda rid=rid: _sent_events(stack, settings, rid))) == 1
                )
            assert sink.matching(request_id=in_flight) == []
            assert sink.matching(request_id=held) == []
            [uncertain] = await n.deliveries(request_id=in_flight)
            assert uncertain["status"] == "sending"
            listed = await n.http.get(
                "/v1/notifications", params={"request_id": in_flight}, headers=n.token()
            )
            assert [x["status"] for x in listed.json()] == ["unknown"]
            [still_held] = await n.deliveries(request_id=held)
            assert still_held["status"] == "retrying" and still_held["owner"] == ALIVE
    finally:
        await mongo.close()


async def test_two_replicas_resume_each_abandoned_delivery_once(
    stack: LocalStack, sink: ScriptedHTTP
) -> None:
    settings = fast(stack, sink)
    rids = [unique("YS-") for _ in range(24)]
    docs = [
        left_behind(rid, "retrying" if i % 2 else "pending", owner=DEAD if i % 2 else None)
        for i, rid in enumerate(rids)
    ]
    mongo: AsyncMongoClient[Doc] = make_client(settings.mongodb_uri)
    try:
        await mongo[settings.db_name("notify")].deliveries.insert_many(docs)
        async with AsyncExitStack() as replicas:
            first = await replicas.enter_async_context(running_notify(settings))
            second = await replicas.enter_async_context(running_notify(settings))
            sweeps = [Sweeps.watch(first), Sweeps.watch(second)]

            async def all_sent() -> bool:
                return len(await first.deliveries(status="sent")) == len(rids)

            await eventually(all_sent, timeout=30, what="every abandoned delivery sent")
            # both replicas swept again after that and found none of them open: no late
            # second attempt can be under way
            ids = {d["_id"] for d in docs}
            for replica in sweeps:
                assert [found & ids for found in await replica.more(2)] == [set(), set()]
            per_request = {rid: len(sink.matching(request_id=rid)) for rid in rids}
            assert per_request == dict.fromkeys(rids, 1)
            owners = {d["owner"] for d in await first.deliveries(status="sent")}
            assert DEAD not in owners
    finally:
        await mongo.close()


async def test_a_redelivered_event_resumes_its_unattempted_delivery_at_once(
    stack: LocalStack, sink: ScriptedHTTP
) -> None:
    """The event was planned but the process died before sending (so its mark was never
    committed): the redelivery sends it — without waiting for the lease — once, and plans
    nothing again."""
    settings = fast(stack, sink)
    settings = settings.model_copy(update={"notify_delivery_lease_s": 3600.0})
    rid = unique("YS-")
    env = Envelope.wrap(routed(rid), "/tests")
    doc = left_behind(
        rid, "pending", event_id=env.id, lease_until=datetime.now(UTC) + timedelta(hours=1)
    )
    mongo: AsyncMongoClient[Doc] = make_client(settings.mongodb_uri)
    try:
        db = mongo[settings.db_name("notify")]
        await db.deliveries.insert_one(doc)
        async with running_notify(settings) as n:
            for _ in range(2):  # redelivered twice: still sent once
                await n.publish(routed(rid), event_id=env.id)
            await eventually(lambda: n.deliveries(request_id=rid, status="sent"), what="sent")
            marker = unique("YS-")
            await n.publish(routed(marker))
            await eventually(lambda: n.deliveries(request_id=marker, status="sent"))
            assert len(sink.matching(request_id=rid)) == 1
            assert len(await n.deliveries(request_id=rid)) == 1  # nothing planned again
    finally:
        await mongo.close()
