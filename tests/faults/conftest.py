"""One fault stack for the module; a report table at the end of the run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.faults.harness import FaultRun

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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    cols = [
        "scenario",
        "accepted",
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
