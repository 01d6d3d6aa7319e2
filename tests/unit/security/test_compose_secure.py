"""docker-compose.secure.yml fits docker-compose.yml and the settings it sets exist.

The override is used as ``docker compose -f docker-compose.yml -f docker-compose.secure.yml``:
every service it names must exist in the base file (a typo would start a stray container),
every TONGXIN_* variable it sets must be a real ServiceSettings field (a typo would be
silently ignored and the service would talk plaintext), every secret it mounts must be
declared and produced by ``python -m tongxin.devstack.secrets``, and the settings it gives
the services must be accepted, with those generated files, by ServiceSettings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tongxin.devstack.secrets import FILES, write_compose_secrets
from tongxin.runtime.kafka import KafkaSecurity
from tongxin.runtime.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[3]
TONGXIN = ("intake", "routing", "volunteer", "notify", "topic-init")


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return _load("docker-compose.yml")


@pytest.fixture(scope="module")
def secure() -> dict[str, Any]:
    return _load("docker-compose.secure.yml")


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_every_service_of_the_override_exists_in_the_base(
    base: dict[str, Any], secure: dict[str, Any]
) -> None:
    missing = set(secure["services"]) - set(base["services"])
    assert not missing, f"services only in docker-compose.secure.yml: {sorted(missing)}"


def test_every_tongxin_service_gets_the_secure_transport(secure: dict[str, Any]) -> None:
    for name in TONGXIN:
        env = _env(secure["services"][name])
        assert env.get("TONGXIN_KAFKA_SECURITY_PROTOCOL") == "SASL_SSL", name
        assert "TONGXIN_MONGODB_URI_FILE" in env, name


def test_every_tongxin_kafka_variable_is_a_settings_field(secure: dict[str, Any]) -> None:
    fields = {f"TONGXIN_{name.upper()}" for name in ServiceSettings.model_fields}
    seen: set[str] = set()
    for name, service in secure["services"].items():
        for var in _env(service):
            if var.startswith("TONGXIN_"):
                assert var in fields, f"{name}: {var} is not a ServiceSettings field"
                seen.add(var)
    assert {"TONGXIN_KAFKA_SECURITY_PROTOCOL", "TONGXIN_KAFKA_SASL_USERNAME"} <= seen


def test_no_password_in_the_environment(secure: dict[str, Any]) -> None:
    for name, service in secure["services"].items():
        for var, value in _env(service).items():
            if re.search(r"PASSWORD|SECRET|URI$", var) and not var.endswith("_FILE"):
                assert value.startswith("${"), f"{name}: {var} holds a literal secret"
            assert "://" not in value or "@" not in value, f"{name}: credentials in {var}"


def test_every_mounted_secret_is_declared_and_generated(secure: dict[str, Any]) -> None:
    declared = secure["secrets"]
    for name, service in secure["services"].items():
        for secret in service.get("secrets", []):
            key = secret if isinstance(secret, str) else secret["source"]
            assert key in declared, f"{name} mounts undeclared secret {key}"
    generated = {Path(spec["file"]).name for spec in declared.values()}
    assert generated == set(FILES)


def test_the_services_settings_work_with_generated_secrets(
    secure: dict[str, Any], tmp_path: Path
) -> None:
    files = write_compose_secrets(tmp_path / "secrets")
    by_secret = {key: files[Path(spec["file"]).name] for key, spec in secure["secrets"].items()}
    env = _env(secure["services"]["routing"])
    values: dict[str, Any] = {}
    for var, value in env.items():
        m = re.fullmatch(r"/run/secrets/(\w+)", value)
        values[var.removeprefix("TONGXIN_").lower()] = by_secret[m.group(1)] if m else value
    settings = ServiceSettings(env="production", jwt_secret="x" * 40, **values)
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == (
        files["kafka_client_password"].read_text().strip()
    )
    assert settings.mongodb_uri.startswith("mongodb://tongxin:")
    assert settings.mongodb_uri_redacted.startswith("mongodb://tongxin:***@mongo:27017/")
    kwargs = KafkaSecurity.from_settings(settings).client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["ssl_context"].check_hostname is True


def test_the_override_is_a_valid_compose_file() -> None:
    """Against the Compose Specification schema vendored for docker-compose.yml."""
    import subprocess
    import sys

    import check_jsonschema  # noqa: F401  (dev extra; a missing install fails here)

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--schemafile",
            str(ROOT / "tools" / "ci" / "compose-spec.json"),
            str(ROOT / "docker-compose.secure.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
