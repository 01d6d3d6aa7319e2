"""What one event's deliveries cost in database round trips (counted on notify's own client)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
from pymongo import AsyncMongoClient, monitoring

import tongxin.runtime.service as service_module
from tests.integration.notify.harness import Notify, routed, running_notify, stack_settings
from tests.integration.notify.servers import Reply, ScriptedHTTP
from tests.support import eventually, headers_of, read_topic, unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import Doc

# polling loops that run whether or not there is work: the outbox relay, the relay lease,
# the deadline scheduler and notify's resume sweep
BACKGROUND = {("find", "outbox"), ("update", "outbox"), ("findAndModify", "outbox_relay_lease")}


class Counting(monitoring.CommandListener):
    """Counts commands by (name, collection) while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.ops: Counter[tuple[str, str]] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.on or event.command_name in ("hello", "isMaster", "ping", "endSessions"):
            return
        target = event.command.get(event.command_name)
        coll = target if isinstance(target, str) else ""
        key = (event.command_name, coll)
        if key in BACKGROUND or coll == "deadlines":
            return
        if key == ("find", "deliveries") and "lease_until" in json.dumps(
            event.command.get("filter", {}), default=str
        ):
            return  # the resume sweep
        self.ops[key] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def sink() -> Iterator[ScriptedHTTP]:
    s = ScriptedHTTP(default=Reply(200, b"ok")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def counting() -> Counting:
    return Counting()


@pytest.fixture(scope="module")
async def notify(
    stack: LocalStack, sink: ScriptedHTTP, counting: Counting
) -> AsyncIterator[Notify]:
    settings = stack_settings(stack, notify_webhook_url=f"{sink.url}/hook")
    mp = pytest.MonkeyPatch()

    def make(uri: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[Doc]:
        # the kernel's client, with a command listener
        return AsyncMongoClient(
            uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            tz_aware=True,
            event_listeners=[counting],
        )

    mp.setattr(service_module, "make_client", make)
    try:
        async with running_notify(settings) as n:
            yield n
    finally:
        mp.undo()


async def _notified(n: Notify, stack: LocalStack, rid: str, count: int) -> bool:
    topic = n.settings.topic("tongxin.notifications.v1")
    records = await read_topic(stack.bootstrap, topic, timeout=2)
    sent = [
        r
        for r in records
        if r.key == rid.encode() and headers_of(r)["ce_type"] == "tongxin.notification.sent.v1"
    ]
    return len(sent) >= count


async def test_one_case_routed_costs_few_round_trips(
    notify: Notify, sink: ScriptedHTTP, stack: LocalStack, counting: Counting
) -> None:
    warm = unique("YS-")
    await notify.publish(routed(warm))
    await eventually(lambda: _notified(notify, stack, warm, 2), timeout=30, what="warmed up")

    rid = unique("YS-")
    counting.ops.clear()
    counting.on = True
    await notify.publish(routed(rid))  # staff webhook + the unit's console
    await eventually(lambda: _notified(notify, stack, rid, 2), timeout=30, what="both sent")
    counting.on = False
    assert len(sink.matching(request_id=rid)) == 1

    ops = dict(counting.ops)
    total = sum(ops.values())
    on_deliveries = sum(v for (_, coll), v in ops.items() if coll == "deliveries")
    print(f"\nDB round trips for one case.routed (webhook + console): {total}; {ops}")
    print(f"on notify.deliveries: {on_deliveries}")
    # the consumer's marks read; planning: contact (the case comes with the event),
    # preferences (read whole at most every 2 s), one bulkWrite (deliveries, case, the
    # console's notification.sent) + commit; the webhook's claim; its outcome: bulkWrite
    # (status, outbox) + commit; the mark: bulkWrite + commit
    assert on_deliveries <= 1, ops
    assert total <= 10, ops
