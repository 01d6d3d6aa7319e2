"""Lockout arithmetic for failed sign-ins (pure).

A counter (one per account name, one per client address) counts failures in a fixed
window that opens at the first failure. Reaching the limit locks the counter for the
lockout period; a success clears the account's counter (never the client's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Limit:
    """How many failures in what window lock for how long."""

    failures: int
    window: timedelta
    lockout: timedelta


@dataclass(frozen=True, slots=True)
class Counter:
    """The failures of one account or client."""

    failures: int = 0
    window_start: datetime | None = None
    locked_until: datetime | None = None


def retry_after(counter: Counter, now: datetime) -> int | None:
    """Seconds until the counter is unlocked (at least 1), or None when it is not locked."""
    if counter.locked_until is None or counter.locked_until <= now:
        return None
    return max(1, math.ceil((counter.locked_until - now).total_seconds()))


def record_failure(counter: Counter, now: datetime, limit: Limit) -> Counter:
    """The counter after one more failure at ``now``."""
    if retry_after(counter, now) is not None:
        return counter  # already locked: the lock is not extended by attempts during it
    expired = counter.window_start is None or now - counter.window_start >= limit.window
    if expired or counter.locked_until is not None:
        counter = Counter(failures=0, window_start=now)
    failures = counter.failures + 1
    if failures >= limit.failures:
        return replace(counter, failures=failures, locked_until=now + limit.lockout)
    return replace(counter, failures=failures)
