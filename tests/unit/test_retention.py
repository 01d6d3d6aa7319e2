"""Retention rules as filters, and how a parked record's age is read (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.notify.config import NotifySettings
from services.notify.store import delivery_expiries
from tongxin.runtime.dlq import Parked, TooOld, _event_time
from tongxin.runtime.retention import Expiry
from tongxin.runtime.scheduler import deadline_expiries
from tongxin.runtime.settings import ServiceSettings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_an_expiry_filters_its_equalities_then_the_range() -> None:
    rule = Expiry("c", "at", 2 * DAY, {"status": "sent"})
    assert rule.expired(NOW) == {"status": "sent", "at": {"$lt": NOW - 2 * DAY}}
    assert list(rule.expired(NOW)) == ["status", "at"]  # an index's leading field first


def test_fired_deadlines_count_from_due_cancelled_from_cancellation() -> None:
    fired, cancelled = deadline_expiries(7 * DAY)
    assert fired.expired(NOW) == {"status": "fired", "due_at": {"$lt": NOW - 7 * DAY}}
    assert cancelled.expired(NOW) == {
        "status": "cancelled",
        "cancelled_at": {"$lt": NOW - 7 * DAY},
    }
    assert not fired.oldest_first and not cancelled.oldest_first


def test_only_finished_deliveries_expire() -> None:
    rules = delivery_expiries(180 * DAY)
    assert [r.where for r in rules] == [{"status": "sent"}, {"status": "failed"}]
    assert {r.since for r in rules} == {"lease_until"}  # the ``resumable`` index's field


def test_default_windows() -> None:
    s = ServiceSettings()
    assert s.processed_keep_s == 30 * 86400
    assert s.deadlines_keep_s == 7 * 86400
    # the marks outlive Kafka's default retention (7 days) twice over: topic and DLQ
    assert s.processed_keep_s > 2 * 7 * 86400
    assert NotifySettings().notify_deliveries_keep_s == 180 * 86400


def test_a_parked_record_is_as_old_as_its_event() -> None:
    parked_ms = int((NOW - DAY).timestamp() * 1000)
    assert _event_time({"ce_time": "2026-11-20T08:00:00+00:00"}, parked_ms) == datetime(
        2026, 11, 20, 8, 0, tzinfo=UTC
    )
    # no (readable) event time: when it was parked
    assert _event_time({}, parked_ms) == NOW - DAY
    assert _event_time({"ce_time": "yesterday"}, parked_ms) == NOW - DAY
    assert _event_time({}, -1) is None


def test_too_old_names_the_records_and_the_window() -> None:
    p = Parked(0, 7, b"YS-1", "ValueError", "5", "routing.requests", "e1", "t", NOW - 40 * DAY)
    exc = TooOld([p], 30 * DAY)
    assert exc.old == [p]
    assert "1 parked record(s)" in str(exc) and "30 days" in str(exc)
