"""RenewingProducer: when it replaces its producer, and when it must not (fakes: pure logic;
the real broker case is in tests/integration/test_outbox_kafka.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from tongxin.runtime.kafka import RenewingProducer


class FakeProducer:
    """Fails every send with ``error`` (None: acknowledges it)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.started = self.stopped = False
        self.sent: list[bytes | None] = []

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes | None = None, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(value)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.error is None:
            fut.set_result("ack")
        else:
            fut.set_exception(self.error)
        return fut


def renewing(*producers: FakeProducer) -> tuple[RenewingProducer, list[int]]:
    made = iter(producers)
    renewed: list[int] = []
    rp = RenewingProducer(lambda: next(made), on_renew=lambda: renewed.append(1))  # type: ignore[arg-type,return-value]
    return rp, renewed


async def settle(rp: RenewingProducer) -> None:
    await asyncio.sleep(0)
    await asyncio.gather(*rp._tasks)


async def test_a_fatal_send_error_replaces_the_producer_and_the_retry_goes_through() -> None:
    broken, fresh = FakeProducer(OutOfOrderSequenceNumber()), FakeProducer()
    rp, renewed = renewing(broken, fresh)
    await rp.start()
    with pytest.raises(OutOfOrderSequenceNumber):  # the failed send still fails
        await rp.send_and_wait("t", b"1")
    await settle(rp)
    assert rp.current is fresh and fresh.started and broken.stopped
    assert rp.renewals == 1 and renewed == [1]
    assert await rp.send_and_wait("t", b"1") == "ack"
    assert fresh.sent == [b"1"]


async def test_many_failures_of_one_producer_renew_it_once() -> None:
    broken, fresh, spare = FakeProducer(OutOfOrderSequenceNumber()), FakeProducer(), FakeProducer()
    rp, _ = renewing(broken, fresh, spare)
    await rp.start()
    futs = [await rp.send("t", str(i).encode()) for i in range(5)]
    await asyncio.gather(*futs, return_exceptions=True)
    await settle(rp)
    assert rp.renewals == 1 and rp.current is fresh and not spare.started


async def test_a_retriable_error_keeps_the_producer() -> None:
    flaky = FakeProducer(KafkaTimeoutError())
    rp, renewed = renewing(flaky)
    await rp.start()
    with pytest.raises(KafkaTimeoutError):
        await rp.send_and_wait("t", b"1")
    await settle(rp)
    assert rp.current is flaky and renewed == []


async def test_no_renewal_after_stop() -> None:
    broken = FakeProducer(OutOfOrderSequenceNumber())
    rp, renewed = renewing(broken, FakeProducer())
    await rp.start()
    fut = await rp.send("t", b"1")
    await rp.stop()
    with pytest.raises(OutOfOrderSequenceNumber):
        await fut
    await settle(rp)
    assert rp.current is broken and renewed == []


async def test_a_new_producer_that_cannot_start_leaves_the_old_one_for_the_next_try() -> None:
    class Unstartable(FakeProducer):
        async def start(self) -> None:
            raise KafkaTimeoutError()

    broken, dead, fresh = FakeProducer(OutOfOrderSequenceNumber()), Unstartable(), FakeProducer()
    rp, _ = renewing(broken, dead, fresh)
    await rp.start()
    with pytest.raises(OutOfOrderSequenceNumber):
        await rp.send_and_wait("t", b"1")
    await settle(rp)
    assert rp.current is broken and dead.stopped and rp.renewals == 0
    with pytest.raises(OutOfOrderSequenceNumber):
        await rp.send_and_wait("t", b"2")
    await settle(rp)
    assert rp.current is fresh and rp.renewals == 1
