"""Consumer retry rules: backoff, exhaustion, transient errors, dead-letter headers."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from pydantic import BaseModel, ValidationError
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from tongxin.contracts.envelope import InvalidEnvelope
from tongxin.runtime.consumer import RetryPolicy, dlq_headers, is_transient

# --- RetryPolicy.delay -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 3.2), (6, 5.0), (7, 5.0), (50, 5.0)],
)
def test_delay_without_jitter_grows_exponentially_up_to_the_maximum(
    attempt: int, expected: float
) -> None:
    policy = RetryPolicy(jitter=False)

    assert policy.delay(attempt) == pytest.approx(expected)


def test_delay_uses_initial_multiplier_and_maximum() -> None:
    policy = RetryPolicy(initial=1.0, multiplier=3.0, maximum=20.0, jitter=False)

    assert [policy.delay(a) for a in (1, 2, 3, 4)] == pytest.approx([1.0, 3.0, 9.0, 20.0])


def test_delay_without_jitter_never_calls_rnd() -> None:
    def boom() -> float:
        raise AssertionError("rnd must not be used without jitter")

    assert RetryPolicy(jitter=False).delay(2, rnd=boom) == pytest.approx(0.4)


@pytest.mark.parametrize("attempt", [1, 3, 6, 20])
def test_jitter_stays_between_half_and_all_of_the_base(attempt: int) -> None:
    policy = RetryPolicy()
    base = RetryPolicy(jitter=False).delay(attempt)

    low = policy.delay(attempt, rnd=lambda: 0.0)
    mid = policy.delay(attempt, rnd=lambda: 0.5)
    high = policy.delay(attempt, rnd=lambda: 0.999999)

    assert low == pytest.approx(base / 2)
    assert mid == pytest.approx(base * 0.75)
    assert base / 2 <= low < mid < high <= base
    assert high == pytest.approx(base, rel=1e-5)


def test_jitter_never_exceeds_the_maximum() -> None:
    policy = RetryPolicy(maximum=1.0)

    assert max(policy.delay(a, rnd=lambda: 0.999999) for a in range(1, 30)) <= 1.0


def test_jitter_uses_the_injected_random_source() -> None:
    draws: list[float] = []

    def rnd() -> float:
        draws.append(0.25)
        return 0.25

    delay = RetryPolicy(initial=1.0).delay(1, rnd=rnd)

    assert draws == [0.25]
    assert delay == pytest.approx(1.0 * (0.5 + 0.25 / 2))


def test_delay_is_capped_even_for_a_huge_attempt_number() -> None:
    # Regression: multiplier ** (attempt - 1) overflowed a float before min() could cap it.
    policy = RetryPolicy(max_attempts=10_000)

    assert policy.delay(2_000, rnd=lambda: 0.0) == pytest.approx(2.5)
    assert RetryPolicy(jitter=False).delay(2_000) == 5.0


# --- RetryPolicy.exhausted -------------------------------------------------------------------


def test_exhausted_after_max_attempts_failures() -> None:
    policy = RetryPolicy(max_attempts=3)

    assert [policy.exhausted(a) for a in (1, 2, 3, 4)] == [False, False, True, True]


def test_a_single_attempt_policy_is_exhausted_at_once() -> None:
    assert RetryPolicy(max_attempts=1).exhausted(1)


def test_default_policy_allows_five_attempts() -> None:
    policy = RetryPolicy()

    assert not policy.exhausted(4)
    assert policy.exhausted(5)


# --- is_transient ----------------------------------------------------------------------------


class _Model(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Model.model_validate({"n": "not a number"})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a ValidationError")


@pytest.mark.parametrize(
    "exc",
    [
        AutoReconnect("primary stepped down"),
        ServerSelectionTimeoutError("no servers"),
        NetworkTimeout("timed out"),
        KafkaConnectionError("connection refused"),
        KafkaTimeoutError(),
        ConnectionRefusedError(),
        TimeoutError(),
        OperationFailure(
            "WriteConflict", 112, {"errorLabels": ["TransientTransactionError"], "code": 112}
        ),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_infrastructure_errors_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad data"),
        KafkaError("a broker error not marked retriable"),
        FileNotFoundError("not the network"),
        KeyError("missing"),
        TypeError("wrong"),
        RuntimeError("handler bug"),
        InvalidEnvelope("poison"),
        DuplicateKeyError("E11000"),
        OperationFailure("a refused command, no transient label", 2),
        _validation_error(),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_errors_of_the_record_or_the_code_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


# --- dlq_headers -----------------------------------------------------------------------------

ORIGINAL = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"evt-1"),
    ("ce_type", b"tongxin.case.routed.v1"),
    ("content-type", b"application/json"),
    ("traceparent", b"00-abc-def-01"),
]


def test_dlq_headers_keep_the_original_ones_and_append_the_dead_letter_ones() -> None:
    headers = dlq_headers(ORIGINAL, "ValueError: bad tier", 5, "routing")

    assert headers == [
        *ORIGINAL,
        ("x-error", b"ValueError: bad tier"),
        ("x-attempts", b"5"),
        ("x-consumer", b"routing"),
    ]


def test_dlq_headers_replace_previous_dead_letter_headers() -> None:
    parked_before = [
        *ORIGINAL,
        ("x-error", b"old error"),
        ("x-attempts", b"3"),
        ("x-consumer", b"old-consumer"),
    ]

    headers = dlq_headers(parked_before, "new error", 1, "notify")

    assert [k for k, _ in headers].count("x-error") == 1
    assert [k for k, _ in headers].count("x-attempts") == 1
    assert [k for k, _ in headers].count("x-consumer") == 1
    assert dict(headers)["x-error"] == b"new error"
    assert dict(headers)["x-attempts"] == b"1"
    assert dict(headers)["x-consumer"] == b"notify"
    assert headers[: len(ORIGINAL)] == ORIGINAL


def test_dlq_headers_truncate_a_long_error_to_2000_characters() -> None:
    headers = dict(dlq_headers(ORIGINAL, "E" * 5000, 2, "intake"))

    assert headers["x-error"] == b"E" * 2000


def test_dlq_headers_truncate_by_characters_and_keep_valid_utf8() -> None:
    error = "处理失败" * 1000  # 4000 characters, 12000 bytes

    headers = dict(dlq_headers(ORIGINAL, error, 2, "intake"))

    assert headers["x-error"].decode("utf-8") == error[:2000]


def test_dlq_headers_keep_a_short_error_whole() -> None:
    error = "E" * 2000

    assert dict(dlq_headers([], error, 1, "c"))["x-error"] == error.encode()


def test_dlq_headers_do_not_modify_the_original_list() -> None:
    original = list(ORIGINAL)

    dlq_headers(original, "err", 1, "c")

    assert original == ORIGINAL
