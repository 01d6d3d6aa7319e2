"""Prometheus config, alert rules and their unit tests pass ``promtool`` (check + test rules).

promtool is a system tool (Debian ``prometheus`` package; ``tools/ci/system-deps.sh`` installs
it for ``make test``). Without it these tests fail — a skipped check would pass CI unnoticed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))


def _promtool(*args: str, cwd: Path) -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not on PATH: install it with tools/ci/system-deps.sh "
            "(Debian package 'prometheus') — the alert rules cannot be checked without it",
            pytrace=False,
        )
    proc = subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited {proc.returncode}:\n{out}"
    return out


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    # rule_files are relative to prometheus.yml (the compose mount keeps the folder together);
    # a copy elsewhere proves the config does not depend on where it is run from.
    copy = tmp_path / "prometheus"
    shutil.copytree(PROM, copy)
    out = _promtool("check", "config", str(copy / "prometheus.yml"), cwd=tmp_path)
    assert "is valid prometheus config file syntax" in out


def test_alert_rules_are_valid() -> None:
    out = _promtool("check", "rules", str(PROM / "alerts.yml"), cwd=ROOT)
    assert "SUCCESS" in out


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_alert_rule_unit_tests_pass(path: Path) -> None:
    out = _promtool("test", "rules", path.name, cwd=path.parent)
    assert "SUCCESS" in out


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = {r["alert"] for g in _load(PROM / "alerts.yml")["groups"] for r in g["rules"]}
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        doc = _load(path)
        assert doc["rule_files"] == ["../alerts.yml"], path.name
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts, "no alert rules"
    assert not alerts - fires, f"alerts never shown to fire: {sorted(alerts - fires)}"
    assert not alerts - quiet, f"alerts never shown to stay quiet: {sorted(alerts - quiet)}"
    unknown = (fires | quiet) - alerts
    assert not unknown, f"tests of unknown alerts: {sorted(unknown)}"
