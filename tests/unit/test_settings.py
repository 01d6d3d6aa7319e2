"""ServiceSettings: TONGXIN_* environment, names, and the production guard."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from tongxin.runtime.settings import PLACEHOLDER_SECRET, ServiceSettings

REAL_SECRET = "a-real-production-secret-of-enough-length"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read only what each test sets, not the developer's shell."""
    for name in list(os.environ):
        if name.upper().startswith("TONGXIN_"):
            monkeypatch.delenv(name)


def test_defaults_without_environment() -> None:
    s = ServiceSettings()

    assert s.env == "development"
    assert s.topic_prefix == ""
    assert s.db_prefix == "tongxin_"
    assert s.jwt_secret == PLACEHOLDER_SECRET
    assert s.deadline_scale == 1.0
    assert s.consumer_max_attempts == 5


def test_values_come_from_tongxin_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_KAFKA_BOOTSTRAP", "broker:19092")
    monkeypatch.setenv("TONGXIN_MONGODB_URI", "mongodb://db:27017/")
    monkeypatch.setenv("TONGXIN_TOPIC_PREFIX", "t1-")
    monkeypatch.setenv("TONGXIN_DB_PREFIX", "run7_")
    monkeypatch.setenv("TONGXIN_DEADLINE_SCALE", "0.01")
    monkeypatch.setenv("TONGXIN_CONSUMER_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("TONGXIN_KAFKA_IDEMPOTENCE", "false")

    s = ServiceSettings()

    assert s.kafka_bootstrap == "broker:19092"
    assert s.mongodb_uri == "mongodb://db:27017/"
    assert s.topic_prefix == "t1-"
    assert s.db_prefix == "run7_"
    assert s.deadline_scale == pytest.approx(0.01)
    assert s.consumer_max_attempts == 3
    assert s.kafka_idempotence is False


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PREFIX", "wrong-")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "wrong:1")

    s = ServiceSettings()

    assert s.topic_prefix == ""
    assert s.kafka_bootstrap == "127.0.0.1:9092"


def test_empty_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_DB_PREFIX", "")
    monkeypatch.setenv("TONGXIN_KAFKA_BOOTSTRAP", "")

    s = ServiceSettings()

    assert s.db_prefix == "tongxin_"
    assert s.kafka_bootstrap == "127.0.0.1:9092"


def test_unknown_tongxin_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_NOT_A_SETTING", "x")

    assert not hasattr(ServiceSettings(), "not_a_setting")


def test_topic_prepends_the_topic_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().topic("tongxin.cases.v1") == "tongxin.cases.v1"

    monkeypatch.setenv("TONGXIN_TOPIC_PREFIX", "test-ab12.")

    assert ServiceSettings().topic("tongxin.cases.v1") == "test-ab12.tongxin.cases.v1"


def test_db_name_prepends_the_db_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().db_name("routing") == "tongxin_routing"

    monkeypatch.setenv("TONGXIN_DB_PREFIX", "t42_")

    assert ServiceSettings().db_name("routing") == "t42_routing"
    assert ServiceSettings().db_name("intake") == "t42_intake"


def test_production_refuses_the_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_ENV", "production")

    with pytest.raises(ValidationError, match="TONGXIN_JWT_SECRET"):
        ServiceSettings()


def test_production_refuses_an_empty_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty variable is ignored, so the placeholder default would be used.
    monkeypatch.setenv("TONGXIN_ENV", "production")
    monkeypatch.setenv("TONGXIN_JWT_SECRET", "")

    with pytest.raises(ValidationError, match="TONGXIN_JWT_SECRET"):
        ServiceSettings()


def test_production_refuses_the_placeholder_passed_explicitly() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(env="production", jwt_secret=PLACEHOLDER_SECRET)


def test_production_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_ENV", "production")
    monkeypatch.setenv("TONGXIN_JWT_SECRET", REAL_SECRET)

    s = ServiceSettings()

    assert s.env == "production"
    assert s.jwt_secret == REAL_SECRET


def test_development_accepts_the_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_ENV", "development")

    assert ServiceSettings().jwt_secret == PLACEHOLDER_SECRET


def test_an_unknown_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_ENV", "staging")

    with pytest.raises(ValidationError):
        ServiceSettings()


@pytest.mark.parametrize("scale", ["0", "-1", "-0.5", "not-a-number"])
def test_deadline_scale_must_be_a_positive_number(
    monkeypatch: pytest.MonkeyPatch, scale: str
) -> None:
    monkeypatch.setenv("TONGXIN_DEADLINE_SCALE", scale)

    with pytest.raises(ValidationError, match="deadline_scale"):
        ServiceSettings()


def test_a_small_positive_deadline_scale_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_DEADLINE_SCALE", "0.001")

    assert ServiceSettings().deadline_scale == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TONGXIN_CONSUMER_MAX_ATTEMPTS", "0"),
        ("TONGXIN_CONSUMER_BACKOFF_INITIAL_S", "-1"),
        ("TONGXIN_OUTBOX_POLL_INTERVAL_S", "0"),
    ],
)
def test_retry_and_poll_settings_are_bounded(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError):
        ServiceSettings()
