"""The machine a run was measured on (figures mean little without it)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tongxin.devstack.kafka import kafka_version

REPO = Path(__file__).resolve().parents[1]


def cpu_model(cpuinfo: str) -> str:
    """The ``model name`` of the first CPU in ``/proc/cpuinfo`` text.

    >>> cpu_model("processor\\t: 0\\nmodel name\\t: AMD EPYC 7B13\\n")
    'AMD EPYC 7B13'
    """
    for line in cpuinfo.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def describe(broker_kind: str) -> dict[str, Any]:
    """CPU, cores, memory, load, Python, Kafka and library versions, the code's revision."""
    mem_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    try:
        kafka = kafka_version()
    except (OSError, RuntimeError):
        kafka = "unknown"
    status = _git("status", "--porcelain")
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo")),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "kafka": kafka,
        "broker": broker_kind,
        "secantusdb": _version("SecantusDB"),
        "aiokafka": _version("aiokafka"),
        "pymongo": _version("pymongo"),
        "httpx": _version("httpx"),
        "uvicorn": _version("uvicorn"),
        "git": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }
