"""Operator aid: ``kill -USR1 <pid>`` writes every asyncio task of the service with its
stack to standard error, to see what a stuck request or consumer is waiting on (py-spy
shows only an idle event loop then). The process goes on running."""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import time


def dump_tasks(out: io.TextIOBase | None = None) -> int:
    """Write each task of the running loop and where it waits; returns how many."""
    stream = out if out is not None else sys.stderr
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    stream.write(f"=== {len(tasks)} asyncio tasks at {time.strftime('%H:%M:%S')} ===\n")
    for task in tasks:
        buf = io.StringIO()
        task.print_stack(file=buf)
        stream.write(f"--- {task.get_name()}\n{buf.getvalue()}")
    stream.flush()
    return len(tasks)


def install_task_dump() -> None:
    """Dump the tasks on SIGUSR1 (where the platform has signals and a loop runs)."""
    if not hasattr(signal, "SIGUSR1"):
        return
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    except (NotImplementedError, RuntimeError):  # not the main thread (e.g. tests' apps)
        return
