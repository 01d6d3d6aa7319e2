"""Notify's clean stop while a delivery waits out its retry's backoff (real Kafka, SecantusDB
and a local webhook that keeps failing)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from tests.integration.notify.harness import routed, running_notify, stack_settings
from tests.integration.notify.servers import Reply, ScriptedHTTP
from tests.support import eventually, unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.mongo import make_client


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_stop_hands_back_a_delivery_waiting_for_its_retry_without_waiting_for_it(
    stack: LocalStack,
) -> None:
    """The consumer's batch waits for its deliveries' outcomes; a delivery between attempts
    (here a 10-minute backoff) must end it as stopped as soon as the process begins to stop
    — not hold it until the consumer's stop grace gives the batch up."""
    sink = ScriptedHTTP(default=Reply(500, b"busy")).start()
    settings = stack_settings(
        stack,
        notify_webhook_url=f"{sink.url}/hook",
        notify_webhook_secret="webhook-secret-for-tests",
        notify_backoff_initial_s=600.0,
        notify_backoff_max_s=600.0,
    )
    rid = unique("YS-")
    # the service's logging setup replaces the root's handlers: listen on the consumer's own
    consumer_log, seen = logging.getLogger("tongxin.runtime.consumer"), Lines()
    consumer_log.addHandler(seen)
    try:
        async with running_notify(settings) as n:
            await n.publish(routed(rid))

            async def waiting_for_retry() -> list[object]:
                return await n.deliveries(
                    request_id=rid, recipient="staff:duty", status="retrying", attempts=1
                )

            await eventually(waiting_for_retry, what="first attempt failed, retry pending")
        stopped = datetime.now(UTC)
    finally:
        sink.stop()
        consumer_log.removeHandler(seen)
    assert "consumer stopped" in seen.lines  # the handler heard the consumer
    assert not [line for line in seen.lines if "still in hand at stop" in line], seen.lines
    assert len(sink.matching(request_id=rid)) == 1  # no second attempt on the way out
    mongo = make_client(settings.mongodb_uri)
    try:
        db = mongo[settings.db_name("notify")]
        [doc] = [
            d async for d in db.deliveries.find({"request_id": rid, "recipient": "staff:duty"})
        ]
    finally:
        await mongo.close()
    # handed back: any replica's sweep (or the next start) resumes it at once
    assert doc["status"] == "retrying" and doc["attempts"] == 1
    assert doc["lease_until"].replace(tzinfo=UTC) <= stopped
