"""Dashboards, alert rules and docs/operations.md name only metrics the code exports.

The catalogue comes from the real metrics classes (tests/ops/catalogue.py), so renaming a
metric in code without updating a PromQL query or the docs fails here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.ops.catalogue import PROMQL_METRIC, ROOT, exported_metrics, exported_series

DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
# Labels Prometheus adds (job, instance), histogram buckets, and the absent() result label.
TARGET_LABELS = {"job", "instance", "le"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def _labels_of(series: str) -> set[str]:
    metrics = exported_metrics()
    for info in metrics.values():
        if series in info.series:
            return set(info.labels)
    return set()


def problems(expr: str) -> list[str]:
    """What in ``expr`` the code does not export: unknown metrics, unknown labels."""
    series = exported_series()
    names = set(PROMQL_METRIC.findall(expr))
    out = [f"unknown metric {n}" for n in sorted(names - series)]
    if not names:
        out.append("reads no metric")
    known = set(TARGET_LABELS)
    for n in names:
        known |= _labels_of(n)
    used: set[str] = set()
    for group in GROUPING.findall(expr):
        used |= {x.strip() for x in group.split(",") if x.strip()}
    # {{ $labels.x }}/{{x}} legend templates use double braces; matchers have operators.
    for block in MATCHERS.findall(expr.replace("{{", "").replace("}}", "")):
        used |= set(MATCHER_LABEL.findall(block))
    out += [f"unknown label {label}" for label in sorted(used - known)]
    return out


def _dashboard_exprs() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        panels = list(dashboard["panels"])
        for p in dashboard["panels"]:
            panels += p.get("panels", [])
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"{path.name}: {p['title']}", t["expr"]))
    return out


def _alert_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [(r["alert"], str(r["expr"])) for g in doc["groups"] for r in g["rules"]]


def test_catalogue_covers_the_runtime_the_four_services_and_the_accounts() -> None:
    modules = {i.module for i in exported_metrics().values()}
    assert modules == {
        "tongxin.runtime.metrics",
        "services.intake.metrics",
        "services.routing.metrics",
        "services.volunteer.metrics",
        "services.notify.metrics",
        "tongxin.accounts.metrics",  # mounted by intake
    }
    for name, info in exported_metrics().items():
        assert name.startswith("tongxin_"), name
        if info.type == "counter":
            assert name.endswith("_total"), name


def test_the_check_flags_unknown_metrics_and_labels() -> None:
    assert problems("sum by (tier) (rate(tongxin_routing_deadline_breaches_total[5m]))") == []
    assert problems("rate(tongxin_requests_made_up_total[5m])") == [
        "unknown metric tongxin_requests_made_up_total"
    ]
    assert problems("sum by (channel) (tongxin_routing_open_cases)") == ["unknown label channel"]
    assert problems('tongxin_outbox_pending{topic="x"}') == ["unknown label topic"]
    assert problems("vector(1)") == ["reads no metric"]


@pytest.mark.parametrize(("where", "expr"), _dashboard_exprs(), ids=lambda v: str(v)[:60])
def test_dashboard_query_reads_exported_metrics(where: str, expr: str) -> None:
    assert problems(expr) == [], (where, expr)


@pytest.mark.parametrize(("alert", "expr"), _alert_exprs(), ids=lambda v: str(v)[:40])
def test_alert_rule_reads_exported_metrics(alert: str, expr: str) -> None:
    assert problems(expr) == [], (alert, expr)


def test_dashboard_covers_the_operator_questions() -> None:
    read = {n for _, e in _dashboard_exprs() for n in PROMQL_METRIC.findall(e)}
    assert {
        "tongxin_requests_submitted_total",  # intake rate
        "tongxin_http_request_seconds_bucket",  # latency by stage
        "tongxin_event_handler_seconds_bucket",
        "tongxin_notification_delivery_seconds_bucket",
        "tongxin_routing_open_cases",  # open cases by tier and unit
        "tongxin_routing_deadline_breaches_total",
        "tongxin_routing_unit_response_rate",
        "tongxin_routing_unit_resolution_rate",
        "tongxin_routing_unit_satisfaction_rate",
        "tongxin_routing_unit_whistle_rate",
        "tongxin_volunteer_utilisation_ratio",
        "tongxin_notifications_total",
        "tongxin_consumer_lag",
        "tongxin_outbox_pending",
        "tongxin_dlq_records_total",
    } <= read


def _catalogue_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(tongxin_[a-z0-9_]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    return rows


def test_operations_doc_catalogues_every_exported_metric() -> None:
    rows = _catalogue_rows()
    metrics = exported_metrics()
    missing = sorted(set(metrics) - set(rows))
    assert not missing, f"docs/operations.md has no catalogue row for {missing}"
    stale = sorted(set(rows) - set(metrics))
    assert not stale, f"docs/operations.md lists metrics the code does not export: {stale}"
    for name, info in metrics.items():
        cells = [c.strip() for c in rows[name].strip().strip("|").split("|")]
        assert cells[1] == info.type, (name, cells[1], info.type)
        documented = set(re.findall(r"`([a-z_]+)`", cells[2]))
        assert documented == set(info.labels), (name, documented, info.labels)


def test_operations_doc_has_a_runbook_for_every_alert() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{3,4} (\w+)", text, re.M))
    alerts = {a for a, _ in _alert_exprs()}
    assert not alerts - headings, f"no runbook section for {sorted(alerts - headings)}"
