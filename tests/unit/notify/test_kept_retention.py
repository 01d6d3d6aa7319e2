"""How long notify keeps a submitter's contact and a case (PIPL): a window after the request
closed, at most a cap after they were stored — the rule, the sweeper's rules, the writes that
time them, and the contacts kept in memory (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notify.config import NotifySettings
from services.notify.domain.kept import Contact, Retention, closes, contact_from
from services.notify.store import (
    CASES,
    CONTACTS,
    INDEXES,
    PREFERENCES,
    NotifyStore,
    kept_expiries,
)
from tongxin.contracts.events import (
    CaseClosed,
    CaseResolved,
    RequestFeedbackGiven,
    RequestSubmitted,
    RequestWithdrawn,
    Submitter,
)
from tongxin.runtime.retention import Expiry
from tongxin.runtime.uow import Effects, Update

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
KEPT = Retention(after_close=30 * DAY, cap=365 * DAY)


def test_a_closed_request_expires_its_window_after_closing() -> None:
    stored = NOW - 100 * DAY
    assert KEPT.expired(stored, NOW - 31 * DAY, NOW)
    assert not KEPT.expired(stored, NOW - 29 * DAY, NOW)
    # naive times (as a server may hand them back) are UTC
    assert KEPT.expired(stored.replace(tzinfo=None), (NOW - 31 * DAY).replace(tzinfo=None), NOW)


def test_an_open_request_expires_at_the_cap_and_the_cap_beats_a_recent_close() -> None:
    assert not KEPT.expired(NOW - 364 * DAY, None, NOW)
    assert KEPT.expired(NOW - 366 * DAY, None, NOW)
    assert KEPT.expired(NOW - 366 * DAY, NOW - DAY, NOW)
    assert not KEPT.expired(None, None, NOW)  # no time known: nothing starts a window


def test_a_copy_in_memory_is_fresh_no_longer_than_a_close_after_its_read_allows() -> None:
    read = NOW - 5 * DAY
    # open when read: another replica may close it at once, so a window from the read
    assert KEPT.fresh_until(NOW - 10 * DAY, None, read) == read + 30 * DAY
    # closed when read: its own window
    assert KEPT.fresh_until(NOW - 10 * DAY, NOW - 20 * DAY, read) == NOW + 10 * DAY
    # the cap comes first for an old one
    assert KEPT.fresh_until(NOW - 350 * DAY, None, read) == NOW + 15 * DAY
    # never longer than it may be kept
    for closed in (None, NOW - 20 * DAY, NOW - 6 * DAY):
        until = KEPT.fresh_until(NOW - 10 * DAY, closed, read)
        assert not KEPT.expired(NOW - 10 * DAY, closed, until - timedelta(seconds=1))


def _submitted() -> RequestSubmitted:
    return RequestSubmitted(
        request_id="YS-1",
        channel="platform",
        category="sanitation",
        title="垃圾清运",
        description="垃圾清运不及时",
        community="community:liyuan",
        submitter=Submitter(name="王五", phone="13900000000"),
        submitted_at=NOW,
    )


def test_the_request_ends_with_its_case_closing_or_its_withdrawal() -> None:
    assert closes(CaseClosed(request_id="YS-1", case_id="C-1", at=NOW, reason="satisfied"))
    assert closes(RequestWithdrawn(request_id="YS-1", withdrawn_at=NOW))  # before any case
    assert not closes(CaseResolved(request_id="YS-1", case_id="C-1", at=NOW))
    # a rating closes the case through routing's case.closed (dissatisfied reopens it)
    assert not closes(
        RequestFeedbackGiven(request_id="YS-1", case_id="C-1", rating="satisfied", given_at=NOW)
    )
    assert not closes(_submitted())


def test_a_contact_is_timed_by_the_store_not_by_its_facts() -> None:
    told = contact_from(_submitted())
    assert told is not None and told.stored_at is None and told.closed_at is None
    assert "stored_at" not in told.fields() and "closed_at" not in told.fields()
    # one stored before stored_at existed: its only write's updated_at
    old = Contact.from_doc({"_id": "YS-1", "phone": "1", "updated_at": NOW - DAY})
    assert old.stored_at == NOW - DAY and old.closed_at is None
    new = Contact.from_doc(
        {"_id": "YS-1", "updated_at": NOW, "stored_at": NOW - DAY, "closed_at": NOW}
    )
    assert (new.stored_at, new.closed_at) == (NOW - DAY, NOW)


def test_the_sweeper_finds_closed_ones_by_index_and_the_cap_in_insertion_order() -> None:
    rules = kept_expiries(KEPT)
    assert {r.collection for r in rules} == {CONTACTS, CASES, PREFERENCES}
    (prefs,) = [r for r in rules if r.collection == PREFERENCES]
    assert prefs.expired(NOW) == {
        "_id": {"$regex": "^submitter:"},
        "updated_at": {"$lt": NOW - 365 * DAY},
    }
    for col in (CONTACTS, CASES):
        closed, cap = [r for r in rules if r.collection == col]
        assert closed.expired(NOW) == {"closed_at": {"$lt": NOW - 30 * DAY}}
        assert not closed.oldest_first
        # the closed ones are found through an index of their own
        index = next(i for i in INDEXES if i.collection == col and i.name == "closed")
        assert list(index.keys) == [("closed_at", 1)]
        assert (cap.since, cap.window, cap.oldest_first) == ("stored_at", 365 * DAY, True)
        assert cap.fallback == "updated_at"  # documents stored before this version


def test_a_fallback_time_needs_the_insertion_order_path() -> None:
    with pytest.raises(ValueError, match="oldest_first"):
        Expiry("c", "stored_at", DAY, fallback="updated_at")


def test_default_windows() -> None:
    s = NotifySettings()
    assert s.notify_contacts_keep_s == 30 * 86400
    assert s.notify_contacts_cap_s == 365 * 86400
    # a closed request's contact outlives the processed-event marks' window no less: an
    # event of it replayed from the DLQ still finds whom to tell
    assert s.notify_contacts_keep_s >= s.processed_keep_s


class Emptied:
    """A collection the sweeper emptied: every read finds nothing (and is counted)."""

    def __init__(self) -> None:
        self.reads: list[dict[str, Any]] = []

    def find(self, flt: dict[str, Any]) -> Emptied:
        self.reads.append(flt)
        return self

    def __aiter__(self) -> Emptied:
        return self

    async def __anext__(self) -> dict[str, Any]:
        raise StopAsyncIteration


class FakeDb(dict[str, Emptied]):
    def __missing__(self, key: str) -> Emptied:
        self[key] = Emptied()
        return self[key]


def _store() -> tuple[NotifyStore, Emptied]:
    db = FakeDb()
    return NotifyStore(db, retention=KEPT), db[CONTACTS]  # type: ignore[arg-type]


def _commit(fx: Effects) -> None:
    for fn in fx.committed:
        fn()


def test_saving_sets_the_stored_time_once_and_closing_sets_the_first_close() -> None:
    s, _ = _store()
    fx = Effects()
    told = contact_from(_submitted())
    assert told is not None
    s.save_contact(fx, told, NOW)
    s.mark_closed(fx, "YS-1", NOW + DAY)
    save, close_contact, close_cases = fx.writes
    assert isinstance(save, Update) and save.upsert
    assert save.update["$setOnInsert"] == {"stored_at": NOW}
    assert "stored_at" not in save.update["$set"] and "closed_at" not in save.update["$set"]
    assert isinstance(close_contact, Update) and not close_contact.upsert  # none brought back
    assert close_contact.filter == {"_id": "YS-1", "closed_at": {"$exists": False}}
    assert close_contact.update == {"$set": {"closed_at": NOW + DAY}}
    assert isinstance(close_cases, Update) and close_cases.many and not close_cases.upsert
    assert close_cases.filter == {"request_id": "YS-1", "closed_at": {"$exists": False}}


async def test_a_contact_in_memory_is_not_handed_out_past_its_window() -> None:
    s, contacts = _store()
    fx = Effects()
    told = contact_from(_submitted())
    assert told is not None
    s.save_contact(fx, told, NOW)
    s.mark_closed(fx, "YS-1", NOW + DAY)
    _commit(fx)
    found = await s.contacts(["YS-1"], NOW + 30 * DAY)  # in memory: no read
    assert found["YS-1"].phone == "13900000000" and found["YS-1"].closed_at == NOW + DAY
    assert found["YS-1"].stored_at == NOW and contacts.reads == []
    # past its window the copy in memory is dropped and the collection asked (emptied by
    # the sweeper: nothing comes back)
    assert await s.contacts(["YS-1"], NOW + 31 * DAY + timedelta(seconds=1)) == {}
    assert contacts.reads == [{"_id": {"$in": ["YS-1"]}}]
    assert "YS-1" not in s._contacts


async def test_an_open_contact_in_memory_is_read_again_a_window_after_its_read() -> None:
    # another replica may have heard of the close meanwhile
    s, contacts = _store()
    fx = Effects()
    told = contact_from(_submitted())
    assert told is not None
    s.save_contact(fx, told, NOW)
    _commit(fx)
    assert set(await s.contacts(["YS-1"], NOW + 29 * DAY)) == {"YS-1"}
    assert contacts.reads == []
    assert await s.contacts(["YS-1"], NOW + 30 * DAY) == {}
    assert len(contacts.reads) == 1
