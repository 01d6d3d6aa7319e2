"""Delivery writes filter on ``_id`` first (one id, or ``$in`` a chunk's ids), then plain
conditions: SecantusDB finds a filter's documents by the first clause an index serves, so
the primary key, and scans the whole collection for a top-level ``$or`` and for a
``findAndModify``. (Its ``explain`` reads no update's filter; the reads are explained in
``tests/integration/notify/test_query_plans.py``.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notify.domain.delivery import (
    Delivery,
    Status,
    Take,
    channel_of,
    delivery_id,
    notification_id,
)
from services.notify.domain.templates import Message
from services.notify.store import DELIVERIES, NotifyStore
from tongxin.contracts.enums import NotifyChannel
from tongxin.runtime.uow import Effects, Update


class Result:
    modified_count = 2


class Recording:
    """Stands in for a collection; remembers each write's filter."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []

    async def update_many(self, filt: dict[str, Any], update: dict[str, Any], **kw: Any) -> Result:
        self.filters.append(filt)
        self.updates.append(update)
        return Result()

    async def update_one(self, filt: dict[str, Any], *a: Any, **kw: Any) -> None:
        raise AssertionError("deliveries are claimed in chunks, not one by one")

    async def find_one_and_update(self, filt: dict[str, Any], *a: Any, **kw: Any) -> None:
        raise AssertionError("no findAndModify: SecantusDB scans the collection for it")


class FakeDb(dict[str, Recording]):
    def __missing__(self, key: str) -> Recording:
        self[key] = Recording()
        return self[key]


@pytest.fixture
def store() -> tuple[NotifyStore, Recording]:
    db = FakeDb()
    return NotifyStore(db), db["deliveries"]  # type: ignore[arg-type]


def _by_id(f: dict[str, Any]) -> None:
    assert next(iter(f)) == "_id", f
    assert not any(k.startswith("$") for k in f), f


async def test_claims_take_a_chunk_by_primary_key(store: tuple[NotifyStore, Recording]) -> None:
    s, col = store
    now = datetime.now(UTC)
    ids = ["a", "b"]
    for take in Take:
        assert await s.claim(ids, take, "me", now, "tok", now) == 2
    await s.hand_back(ids, "tok", "boom", now)
    await s.release_held(ids, "me", now)
    assert len(col.filters) == len(Take) + 2
    for f in col.filters:
        _by_id(f)
        assert f["_id"] == {"$in": ids}
    pending, own, abandoned = col.filters[:3]
    assert pending["status"] == "pending"
    assert own["status"] == "retrying" and own["owner"] == "me"  # our own retry
    assert set(abandoned["lease_until"]) == {"$lt"}  # a takeover: only once expired
    for update in col.updates[:3]:  # the attempt is marked in the same write
        assert update["$set"]["status"] == "sending" and update["$inc"] == {"attempts": 1}
        assert update["$set"]["claim"] == "tok"


def test_outcomes_are_effects_on_the_delivery_the_process_holds() -> None:
    s = NotifyStore(FakeDb())  # type: ignore[arg-type]
    now = datetime.now(UTC)
    d = Delivery(
        id=delivery_id("ev-1", "staff:duty", "webhook"),
        event_id="ev-1",
        event_type="case.routed",
        request_id="YS-1",
        recipient="staff:duty",
        channel=NotifyChannel.WEBHOOK,
        message=Message("t", "x"),
        status=Status.SENDING,
        created_at=now,
        updated_at=now,
    )
    fx = Effects()
    s.record_sent(fx, d.id, "me", None, now)
    s.record_failed(fx, d.id, "me", "boom", now)
    s.record_retrying(fx, d.retrying("boom", now, now + timedelta(seconds=5), now), "me")
    s.reopen(fx, d.reopened(now, now))
    s.release(fx, d.released(now, now))
    writes = [w for w in fx.writes if isinstance(w, Update)]
    assert len(writes) == 5 and all(w.collection == DELIVERIES for w in writes)
    for w in writes:
        _by_id(w.filter)
        assert w.filter["_id"] == d.id and not w.many and not w.upsert
    for w in writes[:3]:
        assert w.filter["status"] == "sending" and w.filter["owner"] == "me"
    assert [w.filter["status"] for w in writes[3:]] == ["failed", "deferred"]


def test_the_channel_is_read_from_the_delivery_id() -> None:
    did = delivery_id("ev-1", "station:liyuan:property", "console")
    assert channel_of(did) is NotifyChannel.CONSOLE
    assert channel_of(delivery_id("ev|odd", "staff:duty", "webhook")) is NotifyChannel.WEBHOOK


def test_a_delivery_document_round_trips() -> None:
    now = datetime.now(UTC)
    d = Delivery(
        id=delivery_id("ev-2", "submitter:YS-2", "sms"),
        event_id="ev-2",
        event_type="request.submitted",
        request_id="YS-2",
        recipient="submitter:YS-2",
        channel=NotifyChannel.SMS,
        message=Message("t", "x", "SMS_X", {"id": "YS-2"}),
        status=Status.DEFERRED,
        created_at=now,
        updated_at=now,
        address={"phone": "13800001111"},
        not_before=now + timedelta(hours=1),
        notification_id=notification_id(delivery_id("ev-2", "submitter:YS-2", "sms")),
        recipient_name="张三",
        recipient_kind="submitter",
        template="request_received",
        lease_until=now,
    )
    assert Delivery.from_doc(d.to_doc()) == d
