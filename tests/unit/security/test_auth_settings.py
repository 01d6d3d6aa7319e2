"""Auth settings: the algorithm, the JWKS URL, and what production refuses."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tongxin.cli import app as cli
from tongxin.runtime.auth import Principal, Role, decode_token
from tongxin.runtime.settings import PLACEHOLDER_SECRET, ServiceSettings

REAL = "a-real-production-secret-of-enough-length"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TONGXIN_"):
            monkeypatch.delenv(name)


def test_algorithm_and_jwks_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_JWT_ALGORITHM", "RS256")
    monkeypatch.setenv("TONGXIN_JWKS_URL", "https://idp.example/jwks.json")
    monkeypatch.setenv("TONGXIN_JWT_ISSUER", "https://idp.example")
    monkeypatch.setenv("TONGXIN_JWT_AUDIENCE", "tongxin")

    s = ServiceSettings()

    assert (s.jwt_algorithm, s.jwks_url) == ("RS256", "https://idp.example/jwks.json")
    assert (s.jwt_issuer, s.jwt_audience) == ("https://idp.example", "tongxin")


def test_rs256_needs_a_jwks_url() -> None:
    with pytest.raises(ValidationError, match="TONGXIN_JWKS_URL"):
        ServiceSettings(jwt_algorithm="RS256")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://idp/jwks"])
def test_the_jwks_url_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        ServiceSettings(jwt_algorithm="RS256", jwks_url=url)


def test_production_needs_an_https_jwks_url() -> None:
    with pytest.raises(ValidationError, match="https"):
        ServiceSettings(env="production", jwt_algorithm="RS256", jwks_url="http://idp/jwks")
    s = ServiceSettings(env="production", jwt_algorithm="RS256", jwks_url="https://idp/jwks")
    assert s.jwt_secret == PLACEHOLDER_SECRET  # unused: RS256 accepts no HS256 token


def test_other_algorithms_are_refused() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(jwt_algorithm="none")  # type: ignore[arg-type]


@pytest.mark.parametrize("env", ["development", "test"])
def test_placeholder_is_accepted_in_development_and_test(env: str) -> None:
    assert ServiceSettings(env=env).jwt_secret == PLACEHOLDER_SECRET  # type: ignore[arg-type]


def test_production_refuses_the_placeholder_and_short_secrets() -> None:
    with pytest.raises(ValidationError, match="TONGXIN_JWT_SECRET"):
        ServiceSettings(env="production")
    with pytest.raises(ValidationError, match="32 bytes"):
        ServiceSettings(env="production", jwt_secret="too-short")
    assert ServiceSettings(env="production", jwt_secret=REAL).jwt_secret == REAL


def test_tongxin_token_mints_a_verifiable_hs256_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_JWT_SECRET", REAL)

    out = CliRunner().invoke(
        cli, ["token", "--role", "department", "--unit", "dept:civil-affairs", "--sub", "li"]
    )

    assert out.exit_code == 0, out.output
    assert decode_token(REAL, out.output.strip()) == Principal(
        "li", Role.DEPARTMENT, "dept:civil-affairs"
    )


def test_tongxin_token_refuses_under_rs256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_JWT_ALGORITHM", "RS256")
    monkeypatch.setenv("TONGXIN_JWKS_URL", "https://idp.example/jwks.json")

    out = CliRunner().invoke(cli, ["token", "--role", "staff"])

    assert out.exit_code == 2
    assert "identity provider" in out.output
