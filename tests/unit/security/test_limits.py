"""Abuse limits and tracking codes, without I/O."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from services.intake.config import IntakeSettings
from services.intake.domain.requests import code_matches, hash_code, new_tracking_code
from services.intake.limits import TokenBucketLimiter, client_address


def test_a_burst_then_the_refill_rate() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(per_minute=6, burst=3, clock=lambda: now[0])

    assert [limiter.take("1.2.3.4") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("1.2.3.4") == pytest.approx(10.0)  # one token per 10 s
    assert limiter.take("5.6.7.8") == 0  # another client has its own bucket
    now[0] += 10
    assert limiter.take("1.2.3.4") == 0
    assert limiter.take("1.2.3.4") > 0


def test_a_refused_request_does_not_cost_a_token() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(per_minute=60, burst=1, clock=lambda: now[0])
    limiter.take("c")
    for _ in range(100):
        assert limiter.take("c") > 0
    now[0] += 1.0
    assert limiter.take("c") == 0


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    limiter.take("c")
    now[0] += 3600
    assert [limiter.take("c") == 0 for _ in range(3)] == [True, True, False]


def test_memory_is_bounded() -> None:
    limiter = TokenBucketLimiter(per_minute=1, burst=1, max_clients=100)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers: list[tuple[bytes, bytes]] = []
    if forwarded is not None:
        headers.append((b"x-forwarded-for", forwarded.encode()))
    scope: dict[str, Any] = {"type": "http", "headers": headers, "client": (peer, 5000)}
    return Request(scope)


def test_forwarded_for_is_ignored_unless_trusted() -> None:
    spoofed = _request("203.0.113.9", "1.1.1.1")
    assert client_address(spoofed, trust_forwarded_for=False) == "203.0.113.9"
    # behind a trusted proxy: the address the proxy appended (the last one)
    proxied = _request("10.0.0.2", "1.1.1.1, 198.51.100.7")
    assert client_address(proxied, trust_forwarded_for=True) == "198.51.100.7"
    assert client_address(_request("10.0.0.2"), trust_forwarded_for=True) == "10.0.0.2"


@pytest.mark.parametrize(
    ("env", "explicit", "enabled"),
    [
        ("production", None, True),
        ("development", None, True),
        ("test", None, True),
        ("test", False, False),
        ("development", False, False),
        ("production", False, False),
    ],
)
def test_the_anonymous_limit_is_on_in_every_environment_by_default(
    env: str, explicit: bool | None, enabled: bool
) -> None:
    given = {} if explicit is None else {"intake_anonymous_limit": explicit}
    s = IntakeSettings(
        env=env,  # type: ignore[arg-type]
        jwt_secret="a-real-production-secret-of-enough-length",
        **given,
    )
    assert s.anonymous_limit_enabled is enabled


def test_tracking_codes_carry_at_least_80_bits_and_are_stored_hashed() -> None:
    codes = {new_tracking_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert len(code) * 6 >= 80  # base64url, 6 bits a character
        assert set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    code = codes.pop()
    stored = hash_code(code)
    assert code not in stored
    assert code_matches(code, stored)
    assert not code_matches(code[:-1], stored)
    assert not code_matches("", stored)
