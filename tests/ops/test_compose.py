"""docker-compose.yml is a valid Compose file and runs as an operable stack.

Validated with check-jsonschema against the Compose Specification schema vendored in
tools/ci/compose-spec.json (no network at test time); then the operational shape: one-shot
init steps the services wait for, healthchecks, restart policies, resource limits, volumes.
The topic-init command itself runs against the real broker of the ``stack`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from tests.support import unique
from tongxin.contracts.topics import TOPICS, dlq_topic
from tongxin.devstack.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tools" / "ci" / "compose-spec.json"
TONGXIN = ("intake", "routing", "volunteer", "notify")
ONE_SHOTS = ("topic-init", "mongo-init")


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    try:
        import check_jsonschema  # noqa: F401
    except ImportError:
        pytest.fail(
            "check-jsonschema is not installed: make .venv/.installed (requirements/dev.lock)",
            pytrace=False,
        )
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_vendored_schema_is_the_compose_specification() -> None:
    head = SCHEMA.read_text(encoding="utf-8")[:600]
    assert '"title": "Compose Specification"' in head


def test_vendored_schema_is_the_one_check_jsonschema_ships() -> None:
    from importlib.resources import files

    shipped = files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == json.loads(
        SCHEMA.read_text(encoding="utf-8")
    ), "check-jsonschema ships another compose-spec: refresh it (tools/ci/compose-spec.md)"


def test_compose_file_validates_against_the_compose_specification() -> None:
    proc = _validate(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validation done" in proc.stdout


def test_the_validation_rejects_an_invalid_compose_file(tmp_path: Path) -> None:
    # The same check on a file with an unknown depends_on condition must fail.
    bad = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text(encoding="utf-8")
    assert "condition: service_completed_successfully" in text
    bad.write_text(
        text.replace("condition: service_completed_successfully", "condition: when_it_feels_like"),
        encoding="utf-8",
    )
    proc = _validate(bad)
    assert proc.returncode != 0, proc.stdout
    assert "when_it_feels_like" in proc.stdout + proc.stderr


def _long_running(compose: dict[str, Any]) -> dict[str, Any]:
    return {n: s for n, s in compose["services"].items() if n not in ONE_SHOTS}


def test_every_long_running_container_has_healthcheck_restart_and_limits(
    compose: dict[str, Any],
) -> None:
    services = _long_running(compose)
    assert set(TONGXIN) | {"kafka", "mongo", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        test = svc.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name}: no healthcheck"
        assert svc.get("restart") in {"unless-stopped", "always", "on-failure"}, name
        limits = svc["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0, name
        assert str(limits["memory"])[:-1].isdigit(), name


def test_one_shots_run_once_and_every_service_waits_for_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ONE_SHOTS:
        assert services[name]["restart"] == "no", name
        assert services[name]["deploy"]["resources"]["limits"], name
    for name in TONGXIN:
        depends = services[name]["depends_on"]
        for init in ONE_SHOTS:
            assert depends[init]["condition"] == "service_completed_successfully", (name, init)
    assert services["topic-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["mongo-init"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    # the init steps use the broker and database the services use
    env = services["topic-init"]["environment"]
    assert (
        env["TONGXIN_KAFKA_BOOTSTRAP"]
        == services["intake"]["environment"]["TONGXIN_KAFKA_BOOTSTRAP"]
    )
    init = " ".join(services["mongo-init"]["command"])
    assert "rs.initiate" in init and "_id:'rs0'" in init and "isWritablePrimary" in init
    assert "replicaSet=rs0" in services["intake"]["environment"]["TONGXIN_MONGODB_URI"]


def test_named_volumes_are_declared_and_stateful_services_keep_data(
    compose: dict[str, Any],
) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            source = str(vol).split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used <= declared, used - declared
    mounts = {
        name: [str(v).split(":")[1] for v in compose["services"][name].get("volumes", [])]
        for name in ("kafka", "mongo", "prometheus", "grafana")
    }
    assert "/var/lib/kafka/data" in mounts["kafka"]
    assert "/data/db" in mounts["mongo"]
    assert "/prometheus" in mounts["prometheus"]
    assert "/var/lib/grafana" in mounts["grafana"]


async def _topics(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if not n.startswith("__")]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described}


def test_topic_init_creates_every_contract_topic_and_its_dlq(
    compose: dict[str, Any], stack: LocalStack
) -> None:
    """Run topic-init's command (as in the compose file) against the real broker."""
    command = compose["services"]["topic-init"]["command"]
    exe = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert exe, command
    prefix = unique("ops.") + "."
    env = {
        **os.environ,
        "TONGXIN_ENV": "test",
        "TONGXIN_KAFKA_BOOTSTRAP": stack.bootstrap,
        "TONGXIN_TOPIC_PREFIX": prefix,
    }
    proc = subprocess.run(
        [exe, *command[1:]], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = {name: n for name, n in asyncio.run(_topics(stack.bootstrap)).items() if prefix in name}
    wanted = {prefix + t.name: t.partitions for t in TOPICS}
    wanted |= {prefix + dlq_topic(t.name): 1 for t in TOPICS}
    assert got == wanted
