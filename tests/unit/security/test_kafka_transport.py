"""Kafka transport settings: inconsistent combinations refused, client kwargs, no leaks.

Every aiokafka client of tongxin/ and services/ is built by tongxin/runtime/kafka.py, so
the transport settings reach all of them (checked on the source, so a new raw client fails).
"""

from __future__ import annotations

import ast
import logging
import os
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from tongxin.devstack.tls import make_tls_files
from tongxin.runtime.kafka import PLAINTEXT, KafkaSecurity
from tongxin.runtime.logs import JsonFormatter
from tongxin.runtime.settings import ServiceSettings, redact_uri

ROOT = Path(__file__).resolve().parents[3]
SASL = {
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_mechanism": "SCRAM-SHA-256",
    "kafka_sasl_username": "tongxin",
    "kafka_sasl_password": "pw-of-the-test",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TONGXIN_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    return {"ca": files.cafile, "cert": files.certfile, "key": files.keyfile}


def test_plaintext_by_default() -> None:
    s = ServiceSettings()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert KafkaSecurity.from_settings(s).client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert PLAINTEXT.client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SASL.items():
        monkeypatch.setenv(f"TONGXIN_{k.upper()}", v)
    kwargs = KafkaSecurity.from_settings(ServiceSettings()).client_kwargs()
    assert kwargs == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "tongxin",
        "sasl_plain_password": "pw-of-the-test",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kafka_sasl_username": None}, "needs TONGXIN_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_password": None}, "needs TONGXIN_KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_password": ""}, "needs TONGXIN_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": None}, "USERNAME"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "does not use SASL"),
        ({"kafka_security_protocol": "SSL"}, "does not use SASL"),
        ({"kafka_ssl_cafile": "/etc/hostname"}, "does not use TLS"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_ssl_cafile": "/no/such.pem"}, "no such"),
    ],
)
def test_inconsistent_combinations_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServiceSettings(**{**SASL, **change})


def test_plain_over_plaintext_is_refused_in_production_only() -> None:
    plain = {**SASL, "kafka_sasl_mechanism": "PLAIN"}
    ServiceSettings(**plain)  # development: allowed (local brokers)
    with pytest.raises(ValidationError, match="clear text"):
        ServiceSettings(env="production", jwt_secret="x" * 40, **plain)
    ServiceSettings(env="production", jwt_secret="x" * 40, **SASL)  # SCRAM is fine


def test_a_key_needs_its_certificate(tls: dict[str, Path]) -> None:
    with pytest.raises(ValidationError, match="KEYFILE needs"):
        ServiceSettings(kafka_security_protocol="SSL", kafka_ssl_keyfile=tls["key"])


def test_password_and_uri_from_files(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file\n")
    (tmp_path / "uri").write_text("mongodb://app:s3cret@db:27017/?authSource=admin\n")
    s = ServiceSettings(
        **{**SASL, "kafka_sasl_password": None},
        kafka_sasl_password_file=tmp_path / "pw",
        mongodb_uri_file=tmp_path / "uri",
    )
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == "from-a-file"
    assert s.mongodb_uri == "mongodb://app:s3cret@db:27017/?authSource=admin"
    assert s.mongodb_uri_redacted == "mongodb://app:***@db:27017/?authSource=admin"
    with pytest.raises(ValidationError, match="not both"):
        ServiceSettings(**SASL, kafka_sasl_password_file=tmp_path / "pw")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValidationError, match="is empty"):
        ServiceSettings(
            **{**SASL, "kafka_sasl_password": None}, kafka_sasl_password_file=tmp_path / "empty"
        )


def test_sasl_ssl_builds_a_verifying_tls_context(tls: dict[str, Path]) -> None:
    s = ServiceSettings(
        **{**SASL, "kafka_security_protocol": "SASL_SSL"},
        kafka_ssl_cafile=tls["ca"],
        kafka_ssl_certfile=tls["cert"],
        kafka_ssl_keyfile=tls["key"],
    )
    kwargs = KafkaSecurity.from_settings(s).client_kwargs()
    ctx = kwargs.pop("ssl_context")
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "tongxin local CA"),),)]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_plain_username"] == "tongxin"


def test_ssl_without_a_ca_uses_the_system_store() -> None:
    ctx = KafkaSecurity(protocol="SSL", check_hostname=False).client_kwargs()["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    assert "sasl_mechanism" not in KafkaSecurity(protocol="SSL").client_kwargs()


def test_secrets_stay_out_of_reprs() -> None:
    s = ServiceSettings(**SASL, mongodb_uri="mongodb://app:db-pw-of-the-test@db/")
    security = KafkaSecurity.from_settings(s)
    shown = repr(s) + str(s) + repr(security)
    assert "pw-of-the-test" not in shown
    assert s.mongodb_uri == "mongodb://app:db-pw-of-the-test@db/"
    with pytest.raises(ValueError, match="username and password"):
        KafkaSecurity(protocol="SASL_SSL", username="u")


def test_uri_passwords_are_masked_in_logs() -> None:
    assert redact_uri("mongodb://u:p%40ss@h1,h2/?x=1") == "mongodb://u:***@h1,h2/?x=1"
    assert redact_uri("mongodb://h:27017/") == "mongodb://h:27017/"
    record = logging.makeLogRecord(
        {"msg": "connect to %s", "args": ("mongodb://root:hunter2@db/",), "levelname": "INFO"}
    )
    line = JsonFormatter("t").format(record)
    assert "hunter2" not in line and "mongodb://root:***@db/" in line


def test_every_kafka_client_is_built_by_the_helper() -> None:
    """No AIOKafkaProducer/Consumer/AdminClient(...) outside tongxin/runtime/kafka.py."""
    raw = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
    offenders = []
    for folder in ("tongxin", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "tongxin" / "runtime" / "kafka.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                    if name in raw:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"build Kafka clients with tongxin.runtime.kafka: {offenders}"
