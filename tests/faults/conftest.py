"""One fault stack for the module; a report table at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.harness import FaultRun

REPORT: list[dict[str, object]] = []
RATE = float(os.environ.get("TONGXIN_FAULTS_RATE", "10"))
DURATION = float(os.environ.get("TONGXIN_FAULTS_DURATION", "15"))


@pytest.fixture(scope="module")
def fault_run() -> Iterator[FaultRun]:
    run = FaultRun.create()
    try:
        run.start()
        yield run
    finally:  # also when a service fails to start: leave no process behind
        run.close()


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
