"""Delivery writes filter on ``_id`` plus plain equalities: the database finds the document
by primary key (SecantusDB scans the whole collection for a top-level ``$or``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.notify.delivery import channel_of
from services.notify.store import NotifyStore, delivery_id
from tongxin.contracts.enums import NotifyChannel


class Recording:
    """Stands in for a collection; remembers each write's filter."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    async def find_one_and_update(self, filt: dict[str, Any], *a: Any, **kw: Any) -> None:
        self.filters.append(filt)

    async def update_one(self, filt: dict[str, Any], *a: Any, **kw: Any) -> None:
        self.filters.append(filt)


class FakeDb(dict[str, Recording]):
    def __missing__(self, key: str) -> Recording:
        self[key] = Recording()
        return self[key]


@pytest.fixture
def store() -> tuple[NotifyStore, Recording]:
    db = FakeDb()
    return NotifyStore(db), db["deliveries"]  # type: ignore[arg-type]


async def test_claims_and_outcomes_are_point_lookups(
    store: tuple[NotifyStore, Recording],
) -> None:
    s, col = store
    now = datetime.now(UTC)
    await s.claim_attempt("d", "pending", "me", now)
    await s.claim_attempt("d", "deferred", "me", now)
    await s.claim_attempt("d", "retrying", "me", now, held_by="me")
    await s.claim_attempt("d", "retrying", "me", now)
    await s.mark_retrying("d", "me", "boom", now, now)
    await s.release("d", "me")
    assert len(col.filters) == 6
    for f in col.filters:
        assert next(iter(f)) == "_id" and f["_id"] == "d"
        assert not any(k.startswith("$") for k in f), f
    assert col.filters[2]["owner"] == "me"  # our own retry
    assert set(col.filters[3]["lease_until"]) == {"$lt"}  # a takeover: only once expired


def test_the_channel_is_read_from_the_delivery_id() -> None:
    did = delivery_id("ev-1", "station:liyuan:property", "console")
    assert channel_of(did) is NotifyChannel.CONSOLE
    assert channel_of(delivery_id("ev|odd", "staff:duty", "webhook")) is NotifyChannel.WEBHOOK
