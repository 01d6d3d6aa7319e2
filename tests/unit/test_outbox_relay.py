"""OutboxRelay against in-memory fakes of its ports (OutboxStore, Publisher)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime

import pytest
from prometheus_client import CollectorRegistry

from tongxin.runtime.metrics import Metrics
from tongxin.runtime.outbox import OutboxRecord, OutboxRelay, OutboxStore, Publisher, _whole_entries

WAIT = 2.0  # generous upper bound for something that should happen at once
IDLE_POLL = 60.0  # a poll interval no test waits for: progress must come from nudge/stop
REQUESTS = "tongxin.requests.v1"
SUBMITTED = "tongxin.request.submitted.v1"


class BrokerDown(Exception):
    """What the fake publisher raises for a record it is told to fail."""


def record(rid: str, topic: str = REQUESTS, type_: str = SUBMITTED) -> OutboxRecord:
    return OutboxRecord(
        id=rid,
        topic=topic,
        key=f"req-{rid}".encode(),
        value=b'{"title":"\xe6\xbc\x8f\xe6\xb0\xb4"}',
        headers=[("ce_id", rid.encode()), ("ce_type", type_.encode())],
        type=type_,
    )


class Changes:
    """Wakes waiters whenever a fake changes; never yields to the event loop itself."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait_until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._event.clear()
                await self._event.wait()


class FakeOutbox:
    """In-memory OutboxStore: records in insertion order, a set of sent ids."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.records: list[OutboxRecord] = []
        self.sent: list[str] = []
        self.pending_limits: list[int] = []
        self.mark_calls: list[list[str]] = []
        self.after_read: Callable[[], None] | None = None  # runs as a read returns
        self.purges = 0

    def commit(self, relay: OutboxRelay, *records: OutboxRecord) -> None:
        """What a transaction's commit does: the records are stored and handed off."""
        self.add(*records)
        relay.handoff(records)

    def add(self, *records: OutboxRecord) -> None:
        self.records.extend(records)
        self.changes.notify()

    def pending_ids(self) -> list[str]:
        return [r.id for r in self.records if r.entry_id not in self.sent]

    async def pending(self, limit: int) -> list[OutboxRecord]:
        self.pending_limits.append(limit)
        self.changes.notify()
        found = [r for r in self.records if r.entry_id not in self.sent][:limit]
        if self.after_read:
            self.after_read()
        return found

    async def mark_sent(self, ids: Sequence[str]) -> None:
        self.mark_calls.append(list(ids))
        self.sent.extend(i for i in ids if i not in self.sent)
        self.changes.notify()

    async def purge_sent(self, now: datetime) -> int:
        self.purges += 1
        return 0


class FakePublisher:
    """In-memory Publisher: remembers what it published; fails the ids in ``failing``."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.published: list[OutboxRecord] = []
        self.attempts: list[str] = []
        self.failing: set[str] = set()
        self.fail_times: dict[str, int] = {}  # fail this id this many more times
        self.on_publish: Callable[[OutboxRecord], None] | None = None

    @property
    def published_ids(self) -> list[str]:
        return [r.id for r in self.published]

    async def publish(self, record: OutboxRecord) -> None:
        self.attempts.append(record.id)
        if self.on_publish:
            self.on_publish(record)
        if self.fail_times.get(record.id, 0) > 0:
            self.fail_times[record.id] -= 1
            raise BrokerDown(record.id)
        if record.id in self.failing:
            raise BrokerDown(record.id)
        self.published.append(record)
        self.changes.notify()


@pytest.fixture
def changes() -> Changes:
    return Changes()


@pytest.fixture
def store(changes: Changes) -> FakeOutbox:
    return FakeOutbox(changes)


@pytest.fixture
def publisher(changes: Changes) -> FakePublisher:
    return FakePublisher(changes)


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    """Run the relay in the background; always stop it and wait for it."""
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        relay.stop()
        done, _ = await asyncio.wait({task}, timeout=WAIT)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def test_fakes_implement_the_ports(store: FakeOutbox, publisher: FakePublisher) -> None:
    # Checked by mypy through these annotations; the asserts keep the test honest at runtime.
    as_store: OutboxStore = store
    as_publisher: Publisher = publisher
    assert callable(as_store.pending) and callable(as_store.mark_sent)
    assert callable(as_publisher.publish)


# --- relay_once ------------------------------------------------------------------------------


async def test_relay_once_publishes_pending_records_in_order_and_marks_them(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    store.add(record("a"), record("b"), record("c"))
    relay = OutboxRelay(store, publisher)

    published = await relay.relay_once()

    assert published == 3
    assert publisher.published_ids == ["a", "b", "c"]
    assert publisher.published == store.records
    assert store.sent == ["a", "b", "c"]
    assert store.pending_ids() == []


async def test_relay_once_does_not_publish_records_twice(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    store.add(record("a"))
    relay = OutboxRelay(store, publisher)
    await relay.relay_once()

    again = await relay.relay_once()

    assert again == 0
    assert publisher.attempts == ["a"]


async def test_relay_once_with_nothing_pending_publishes_nothing(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    relay = OutboxRelay(store, publisher)

    assert await relay.relay_once() == 0
    assert publisher.attempts == []
    assert store.mark_calls == []


async def test_a_failed_record_stays_pending_while_the_others_are_marked(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    store.add(record("a"), record("b"), record("c"))
    publisher.failing = {"b"}
    relay = OutboxRelay(store, publisher)

    with pytest.raises(BrokerDown, match="b"):
        await relay.relay_once()

    assert publisher.attempts == ["a", "b", "c"]
    assert sorted(store.sent) == ["a", "c"]
    assert store.pending_ids() == ["b"]


async def test_a_second_pass_publishes_the_record_once_the_failure_clears(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    store.add(record("a"), record("b"), record("c"))
    publisher.failing = {"b"}
    relay = OutboxRelay(store, publisher)
    with pytest.raises(BrokerDown):
        await relay.relay_once()

    publisher.failing.clear()
    published = await relay.relay_once()

    assert published == 1
    assert publisher.published_ids == ["a", "c", "b"]
    assert store.pending_ids() == []


async def test_when_every_publish_fails_nothing_is_marked(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    store.add(record("a"), record("b"))
    publisher.failing = {"a", "b"}
    relay = OutboxRelay(store, publisher)

    with pytest.raises(BrokerDown):
        await relay.relay_once()

    assert store.sent == []
    assert store.pending_ids() == ["a", "b"]


async def test_relay_once_respects_batch_size(store: FakeOutbox, publisher: FakePublisher) -> None:
    store.add(*(record(str(i)) for i in range(5)))
    relay = OutboxRelay(store, publisher, batch_size=2)

    counts = [await relay.relay_once() for _ in range(4)]

    assert counts == [2, 2, 1, 0]
    assert store.pending_limits == [2, 2, 2, 2]
    assert max(len(ids) for ids in store.mark_calls) == 2
    assert publisher.published_ids == ["0", "1", "2", "3", "4"]


async def test_relay_once_counts_only_published_records_in_metrics(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    registry = CollectorRegistry()
    other = "tongxin.cases.v1"
    store.add(record("a"), record("b"), record("c", topic=other, type_="tongxin.case.routed.v1"))
    publisher.failing = {"b"}
    relay = OutboxRelay(store, publisher, metrics=Metrics("test", registry))

    with pytest.raises(BrokerDown):
        await relay.relay_once()

    def published(topic: str, type_: str) -> float | None:
        labels = {"topic": topic, "type": type_}
        return registry.get_sample_value("tongxin_events_published_total", labels)

    assert published(REQUESTS, SUBMITTED) == 1.0
    assert published(other, "tongxin.case.routed.v1") == 1.0


# --- run / nudge / stop ----------------------------------------------------------------------


async def test_nudge_wakes_an_idle_relay(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL)
    async with running(relay) as task:
        await changes.wait_until(lambda: len(store.pending_limits) >= 1)  # first pass done

        store.commit(relay, record("a"), record("b"))
        await changes.wait_until(lambda: store.sent == ["a", "b"])

        store.commit(relay, record("c"))
        await changes.wait_until(lambda: "c" in store.sent)

        assert not task.done()
    assert publisher.published_ids == ["a", "b", "c"]


async def test_stop_drains_what_is_pending_and_returns(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL)
    task = asyncio.create_task(relay.run())
    await changes.wait_until(lambda: len(store.pending_limits) >= 1)
    store.add(record("a"), record("b"), record("c"))  # no nudge: only stop() can drain them

    relay.stop()
    await asyncio.wait_for(task, WAIT)

    assert store.pending_ids() == []
    assert publisher.published_ids == ["a", "b", "c"]


async def test_stop_before_run_still_drains(store: FakeOutbox, publisher: FakePublisher) -> None:
    store.add(*(record(str(i)) for i in range(5)))
    relay = OutboxRelay(store, publisher, batch_size=2, poll_interval=IDLE_POLL)

    relay.stop()
    await asyncio.wait_for(relay.run(), WAIT)

    assert store.pending_ids() == []
    assert store.pending_limits == [2, 2, 2, 2]


async def test_a_failing_drain_at_stop_returns_and_keeps_the_record(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    store.add(record("a"))
    publisher.failing = {"a"}
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL)

    relay.stop()
    await asyncio.wait_for(relay.run(), WAIT)  # logs, does not raise or hang

    assert publisher.attempts == ["a"]
    assert store.pending_ids() == ["a"]


async def test_run_publishes_full_batches_back_to_back(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    store.add(*(record(str(i)) for i in range(5)))
    relay = OutboxRelay(store, publisher, batch_size=2, poll_interval=IDLE_POLL)

    async with running(relay):
        await changes.wait_until(lambda: len(store.sent) == 5)

    assert publisher.published_ids == ["0", "1", "2", "3", "4"]
    assert set(store.pending_limits) == {2}


async def test_run_retries_after_a_publish_failure(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    store.add(record("a"), record("b"))
    publisher.fail_times = {"b": 2}
    relay = OutboxRelay(store, publisher, poll_interval=0.01)

    async with running(relay) as task:
        await changes.wait_until(lambda: sorted(store.sent) == ["a", "b"])
        assert not task.done(), "a publish failure must not end the relay"

    assert publisher.attempts.count("b") == 3
    assert publisher.attempts.count("a") == 1


# --- no lost wake-ups (regression: _wake used to be cleared after the pass) -------------------


async def test_a_nudge_during_a_pass_is_not_lost(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL)

    def commit_another(rec: OutboxRecord) -> None:
        if rec.id == "a":  # another transaction commits while "a" is being published
            store.commit(relay, record("b"))

    publisher.on_publish = commit_another
    store.add(record("a"))
    async with running(relay):
        await changes.wait_until(lambda: store.sent == ["a", "b"])


async def test_a_stop_during_a_pass_ends_the_relay_promptly(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL)
    publisher.on_publish = lambda _rec: relay.stop()
    store.add(record("a"))

    async with running(relay) as task:
        await asyncio.wait({task}, timeout=WAIT)
        assert task.done(), f"run() did not notice stop() within {WAIT} s"
    assert store.sent == ["a"]


# --- hand-offs: committed records published without reading them back ------------------------


async def test_handed_off_records_are_published_without_reading_the_store(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL, mark_interval=0.0)
    async with running(relay):
        await changes.wait_until(lambda: len(store.pending_limits) == 1)  # the start's read
        for i in range(5):
            store.commit(relay, record(f"r{i}"))
            await changes.wait_until(lambda i=i: f"r{i}" in store.sent)

    assert publisher.published_ids == [f"r{i}" for i in range(5)]
    assert len(store.pending_limits) == 2  # the start's read and the one of the stop's drain


async def test_records_nobody_handed_off_are_found_by_the_periodic_read(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    # another replica's commit: in the store, never handed to this relay
    relay = OutboxRelay(store, publisher, poll_interval=0.01, idle_poll_max=0.05)
    async with running(relay):
        await changes.wait_until(lambda: len(store.pending_limits) >= 1)
        store.add(record("elsewhere"))
        await changes.wait_until(lambda: store.sent == ["elsewhere"])


async def test_a_failed_publish_of_handed_off_records_falls_back_to_reading(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=0.01)
    async with running(relay):
        await changes.wait_until(lambda: len(store.pending_limits) == 1)
        publisher.fail_times = {"b": 1}
        store.commit(relay, record("a"), record("b"))
        await changes.wait_until(lambda: sorted(store.sent) == ["a", "b"])
        assert len(store.pending_limits) == 2  # "b" was found by reading the store again
    assert publisher.attempts.count("b") == 2
    assert publisher.published_ids.count("a") == 1


async def test_a_record_handed_off_during_a_read_is_not_left_behind(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL)

    def commit_during_the_read() -> None:
        store.after_read = None
        store.commit(relay, record("late"))  # committed after the read's snapshot

    store.after_read = commit_during_the_read
    async with running(relay):
        await changes.wait_until(lambda: store.sent == ["late"])
        assert len(store.pending_limits) == 1  # taken from the hand-off, no second read


async def test_marks_are_written_together_and_before_the_stop(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL, mark_interval=IDLE_POLL)
    async with running(relay):
        await changes.wait_until(lambda: len(store.pending_limits) == 1)
        store.commit(relay, record("a"))
        await changes.wait_until(lambda: publisher.published_ids == ["a"])
        store.commit(relay, record("b"))
        await changes.wait_until(lambda: publisher.published_ids == ["a", "b"])
        assert store.mark_calls == []  # not yet due
    assert store.mark_calls == [["a", "b"]]  # one write for both, at the stop
    assert store.pending_ids() == []


async def test_marks_are_written_once_due(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=IDLE_POLL, mark_interval=0.05)
    async with running(relay):
        await changes.wait_until(lambda: len(store.pending_limits) == 1)
        store.commit(relay, record("a"), record("b"))
        await changes.wait_until(lambda: store.sent == ["a", "b"])  # no nudge needed
        assert store.mark_calls == [["a", "b"]]


async def test_a_relay_without_the_lease_drops_its_hand_offs(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    class Lease:
        held = False
        asked = 0

        async def hold(self) -> bool:
            self.asked += 1
            changes.notify()
            return self.held

        async def release(self) -> None:
            pass

    lease = Lease()
    relay = OutboxRelay(store, publisher, poll_interval=0.01, lease=lease)
    async with running(relay):
        store.commit(relay, record("a"))
        asked = lease.asked
        await changes.wait_until(lambda: lease.asked >= asked + 3)  # passes without the lease
        assert publisher.attempts == []
        lease.held = True  # taken over: the store is read, not the dropped hand-off
        await changes.wait_until(lambda: store.sent == ["a"])
    assert store.pending_limits  # found by reading


def entry(eid: str, *rids: str) -> list[OutboxRecord]:
    """Records kept in one outbox document (one committed batch)."""
    return [replace(record(r), entry=eid) for r in rids]


async def test_an_entry_is_marked_once_all_its_records_went_out(
    store: FakeOutbox, publisher: FakePublisher
) -> None:
    store.add(*entry("batch-1", "a", "b", "c"), *entry("batch-2", "d"))
    publisher.fail_times = {"b": 1}
    relay = OutboxRelay(store, publisher)
    with pytest.raises(BrokerDown):
        await relay.relay_once()
    assert store.sent == ["batch-2"]  # "a" and "c" went out, but "b" did not: not marked
    assert await relay.relay_once() == 3  # the whole entry again (consumers skip repeats)
    assert store.sent == ["batch-2", "batch-1"]
    assert publisher.published_ids.count("a") == 2


def test_a_pass_takes_whole_entries() -> None:
    records = [*entry("e1", "a", "b"), *entry("e2", "c", "d", "e"), *entry("e3", "f")]
    assert [r.id for r in _whole_entries(records, 3)] == ["a", "b", "c", "d", "e"]
    assert [r.id for r in _whole_entries(records, 2)] == ["a", "b"]
    assert [r.id for r in _whole_entries(records, 10)] == [r.id for r in records]


async def test_the_lease_holder_purges_published_entries(
    store: FakeOutbox, publisher: FakePublisher, changes: Changes
) -> None:
    relay = OutboxRelay(store, publisher, poll_interval=0.01, purge_interval=0.05)
    async with running(relay):
        await changes.wait_until(lambda: store.purges >= 2)
