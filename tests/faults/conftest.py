"""One fault stack for the module; a report table at the end of the run."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import FaultRun
from tongxin.runtime.settings import REPO_ROOT

ARTIFACTS = REPO_ROOT / "var" / "artifacts" / "faults"

REPORT: list[dict[str, object]] = []
RATE = float(os.environ.get("TONGXIN_FAULTS_RATE", "10"))
DURATION = float(os.environ.get("TONGXIN_FAULTS_DURATION", "15"))


@pytest.fixture(scope="module")
def fault_run(request: pytest.FixtureRequest) -> Iterator[FaultRun]:
    failed_before = request.session.testsfailed
    run = FaultRun.create()
    try:
        run.start()
        yield run
    finally:  # also when a service fails to start: leave no process behind
        run.close()
        # data and logs (Kafka log, database, service logs: hundreds of MiB) stay only for
        # a run that failed, to be looked at
        if request.session.testsfailed == failed_before:
            shutil.rmtree(run.root, ignore_errors=True)
        else:
            print(f"\n[tongxin] fault run kept for inspection: {run.root}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the test (the scenario's logs need to know)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _logs(root: Path) -> list[Path]:
    """Every log a fault run writes: services (and extra replicas), database, broker (its
    own log, not its partitions' ``.log`` segments)."""
    found = [*root.glob("logs*/*.log"), *root.glob("db/*.log"), *root.glob("broker/*.log")]
    return sorted(p for p in found if p.is_file())


@pytest.fixture(autouse=True)
def scenario_logs(request: pytest.FixtureRequest, fault_run: FaultRun) -> Iterator[None]:
    """Keep what every process of the run wrote during this scenario under
    ``var/artifacts/faults/<scenario>/``; when the scenario failed, first ask each service
    for a task dump (SIGUSR1), then print the end of every service's log."""
    start = {p: p.stat().st_size for p in _logs(fault_run.root)}
    yield
    report = getattr(request.node, "report_call", None)
    failed = report is not None and report.failed
    if failed:
        _dump_tasks(fault_run, start)
    out = ARTIFACTS / request.node.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    tails: list[str] = []
    for log in _logs(fault_run.root):
        with log.open("rb") as f:
            f.seek(start.get(log, 0))
            text = f.read().decode(errors="replace")
        name = str(log.relative_to(fault_run.root)).replace("/", "_")
        (out / name).write_text(text)
        if failed and log.parent.name.startswith("logs"):
            lines = text.splitlines()
            tails.append(f"----- {name}: last {min(40, len(lines))} of {len(lines)} lines -----")
            tails += [line[:400] for line in lines[-40:]]
    print(f"\n[tongxin] scenario logs kept in {out}")
    if tails:
        print("\n".join(tails))


def _dump_tasks(run: FaultRun, start: dict[Path, int]) -> None:
    """SIGUSR1 to every running service; wait (bounded) until each wrote its dump."""
    procs = {**run.procs, **{f"extra{i}": p for i, p in enumerate(run.extra)}}
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    for name in run.procs:
        log = run.log_dir / f"{name}.log"
        while time.monotonic() < deadline:
            with log.open("rb") as f:
                f.seek(start.get(log, 0))
                if b"asyncio tasks" in f.read():
                    break
            time.sleep(0.2)  # a plain wait for another process's file, bounded above


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    cols = [
        "scenario",
        "offered",
        "accepted",
        "share",
        "processed",
        "lost",
        "duplicated",
        "in_flight",
        "p99_ms",
        "recovery_s",
    ]
    terminalreporter.write_sep("=", f"fault report ({RATE:g} req/s for {DURATION:g} s)")
    terminalreporter.write_line(
        " | ".join(f"{c:>10}" if c != "scenario" else f"{c:<28}" for c in cols)
    )
    for row in REPORT:
        cells = []
        for c in cols:
            v = row.get(c, "")
            cells.append(f"{v!s:<28}" if c == "scenario" else f"{v!s:>10}")
        terminalreporter.write_line(" | ".join(cells))
