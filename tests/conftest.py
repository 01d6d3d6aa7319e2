"""Fixtures: the real local stack (Apache Kafka or tansu + SecantusDB) started by our own code."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack, StackConfig

_stack: LocalStack | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by folder: integration, e2e, faults."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for marker in ("integration", "e2e", "faults"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """One broker and one database for the whole run; tests isolate by names."""
    global _stack
    data = Path(tempfile.mkdtemp(prefix="tongxin-test-"))
    s = LocalStack(StackConfig.from_env(data, kafka_port=free_port(), mongo_port=free_port()))
    s.start()
    _stack = s
    print(f"\n[tongxin] broker under test: {s.broker_kind} at {s.bootstrap}")
    print(f"[tongxin] database under test: SecantusDB at {s.mongodb_uri}")
    yield s
    s.stop()
    shutil.rmtree(data, ignore_errors=True)  # a run's broker and database files


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which broker the integration and e2e tests ran against."""
    if _stack is not None:
        kind = _stack.broker_kind
        label = {"kafka": "real Apache Kafka (KRaft)", "tansu": "tansu (fallback)"}.get(kind, kind)
        terminalreporter.write_line(f"[tongxin] integration/e2e broker: {label}")
