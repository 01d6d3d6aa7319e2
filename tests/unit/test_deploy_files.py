"""The production-shape deployment files hang together: compose, Prometheus, Grafana, image."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PORTS = {"intake": 8001, "routing": 8002, "volunteer": 8003, "notify": 8004}
SUPPORT = {"kafka", "mongo", "prometheus", "grafana"}
# The metric names a PromQL query reads; a word match is enough without a PromQL parser.
METRIC = re.compile(r"\b(tongxin_[a-z0-9_]+|up)\b")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = _yaml(ROOT / "docker-compose.yml")
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    svcs = compose["services"]
    assert isinstance(svcs, dict)
    return svcs


def test_compose_has_every_service(services: dict[str, Any]) -> None:
    assert set(PORTS) | SUPPORT <= set(services)


@pytest.mark.parametrize("name", sorted(PORTS))
def test_tongxin_service_waits_for_healthy_broker_and_database(
    services: dict[str, Any], name: str
) -> None:
    svc = services[name]
    depends = svc["depends_on"]
    for dep in ("kafka", "mongo"):
        assert depends[dep]["condition"] == "service_healthy", (name, dep)
    assert services["kafka"]["healthcheck"]["test"]
    assert services["mongo"]["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(PORTS))
def test_tongxin_service_shape(services: dict[str, Any], name: str) -> None:
    svc = services[name]
    port = PORTS[name]
    assert svc["image"] == "tongxin:latest"
    assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
    assert svc["command"] == ["tongxin", "serve", name]
    assert any(str(p).endswith(f":{port}") for p in svc["ports"])
    probe = " ".join(svc["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe
    env = svc["environment"]
    assert env["TONGXIN_HOST"] == "0.0.0.0"
    assert env["TONGXIN_ENV"] == "production"
    assert env["TONGXIN_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "replicaSet=rs0" in env["TONGXIN_MONGODB_URI"]
    # Compose refuses to start without a real secret rather than fall back to a default.
    assert env["TONGXIN_JWT_SECRET"].startswith("${TONGXIN_JWT_SECRET:?")
    assert svc["restart"] == "unless-stopped"
    assert svc["stop_grace_period"] == "30s"


def test_kafka_and_mongo_settings(services: dict[str, Any]) -> None:
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert str(kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"
    mongo = services["mongo"]
    assert "--replSet" in mongo["command"] and "rs0" in mongo["command"]
    # a killed service's open transaction stops holding its documents soon (docs/operations.md)
    param = mongo["command"][mongo["command"].index("--setParameter") + 1]
    assert param == "transactionLifetimeLimitSeconds=15"
    assert mongo["healthcheck"]["test"]
    # the replica set is initiated by the mongo-init one-shot the services wait for
    assert "rs.initiate" in " ".join(services["mongo-init"]["command"])


def test_prometheus_scrapes_all_four_services() -> None:
    cfg = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    assert set(PORTS) <= set(jobs)
    for name, port in PORTS.items():
        targets = [t for sc in jobs[name]["static_configs"] for t in sc["targets"]]
        assert targets == [f"{name}:{port}"]
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"
    assert "alerts.yml" in cfg["rule_files"]


def test_every_alert_rule_is_complete() -> None:
    rules = [r for g in _yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {
        "ServiceDown",
        "DeadLetters",
        "OutboxBacklog",
        "HighErrorRate",
        "SlowHandlers",
    } <= names
    for rule in rules:
        assert rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        summary = rule["annotations"]["summary"]
        # zh-CN and English in one line.
        assert re.search(r"[\u4e00-\u9fff]", summary), rule["alert"]
        assert re.search(r"[A-Za-z]{3,}", summary), rule["alert"]


def test_grafana_provisioning_points_at_prometheus_and_dashboards() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    sources = _yaml(prov / "datasources" / "prometheus.yml")["datasources"]
    assert any(s["type"] == "prometheus" and s["url"] == "http://prometheus:9090" for s in sources)
    providers = _yaml(prov / "dashboards" / "tongxin.yml")["providers"]
    assert providers and all(p["type"] == "file" for p in providers)


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows nest their panels
    return out


def test_dashboard_queries_read_tongxin_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "tongxin.json").read_text("utf-8"))
    panels = [p for p in _panels(dashboard) if p.get("type") != "row"]
    assert panels
    sources = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uids = {s["uid"] for s in sources["datasources"]}
    seen: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            metrics = set(METRIC.findall(expr))
            assert metrics, (panel["title"], expr)
            seen |= metrics
    wanted = {
        "tongxin_http_requests_total",
        "tongxin_http_request_seconds_bucket",
        "tongxin_events_consumed_total",
        "tongxin_events_published_total",
        "tongxin_outbox_pending",
        "tongxin_dlq_records_total",
    }
    assert wanted <= seen


def test_dockerfile_runs_as_non_root_and_exposes_service_ports() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^EXPOSE 8001 8002 8003 8004$", text, re.M)
    assert 'CMD ["tongxin", "serve", "intake"]' in text
    # Installed into site-packages, the package cannot find deploy/seed relative to itself.
    seed = re.search(r"TONGXIN_SEED_DIR=(\S+)", text)
    assert seed and seed.group(1) == "/app/deploy/seed"
    assert (DEPLOY / "seed").is_dir()


def _pip_installs(text: str) -> list[str]:
    """The ``pip install …`` commands of a Dockerfile or Makefile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [m.group(0).strip() for m in re.finditer(r"pip install[^&\n]*", joined)]


def test_the_image_installs_the_production_lock_with_hashes_and_no_extras() -> None:
    """No Docker engine here: the build's install lines are read instead (issue 20)."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    installs = _pip_installs(text)
    assert installs
    locks = [i for i in installs if " -r " in i]
    assert [i.split(" -r ")[1].split()[0] for i in locks] == [
        "requirements/build.lock",
        "requirements/prod.lock",
    ]
    assert all("--require-hashes" in i for i in locks), locks
    assert re.search(
        r"^COPY requirements/build\.lock requirements/prod\.lock requirements/$", text, re.M
    )
    # the project itself: adding nothing the lock did not (no extras, no dependencies)
    project = [i for i in installs if " -r " not in i]
    assert len(project) == 1, project
    assert project[0].split()[-1] == "."
    assert "--no-deps" in project[0] and "[" not in project[0]
    # nothing else decides versions: no unhashed constraints, no dev or local lock
    steps = "\n".join(ln for ln in text.lower().splitlines() if not ln.lstrip().startswith("#"))
    for stale in ("constraints.txt", "dev.lock", "[dev", "[local", "secantus", "calfkit"):
        assert stale not in steps, stale


def test_make_installs_the_dev_lock_with_hashes_then_the_project_without_dependencies() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):(.*?)\n\n", makefile, re.M | re.S)
    assert stamp
    assert "$(LOCKS)/dev.lock" in stamp.group(1).splitlines()[0]
    installs = _pip_installs(stamp.group(1))
    assert installs == [
        "pip install -q --require-hashes -r $(LOCKS)/build.lock",
        "pip install -q --require-hashes -r $(LOCKS)/dev.lock",
        "pip install -q --no-deps --no-build-isolation -e .",
    ]
    assert re.search(r"^LOCKS\s*:=\s*requirements$", makefile, re.M)
    assert not (ROOT / "constraints.txt").exists()


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "tongxin.json").read_text("utf-8"))
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (p["title"], cells.get((x, y)))
                cells[(x, y)] = p["title"]
