"""Operator aid: ``kill -USR1 <pid>`` writes every asyncio task of the service and where it
waits to standard error, to see what a stuck request or consumer is waiting on (py-spy
shows only an idle event loop then). The process goes on running.

Each task's await chain is followed down to the innermost coroutine (``Task.print_stack``
shows only the outermost frame), and tasks waiting at the same place are written once with
their count: 1,600 requests queued behind one lock are one entry, not 1,600."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from typing import Any, TextIO


def await_chain(task: asyncio.Task[Any]) -> tuple[str, ...]:
    """Where ``task`` waits: ``file:line in function`` from its coroutine inwards, then what
    the innermost coroutine awaits (a future, a sleep) when that is not a coroutine."""
    out: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(200):  # a chain is finite; the bound guards against a cycle
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        frame = frame or getattr(obj, "ag_frame", None)
        if frame is None:
            break
        code = frame.f_code
        out.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "gi_yieldfrom", None)
            or getattr(obj, "ag_await", None)
        )
        if nxt is None:
            break
        if not any(hasattr(nxt, a) for a in ("cr_frame", "gi_frame", "ag_frame")):
            kind = type(nxt).__name__
            out.append(f"awaiting {'Future' if kind == 'FutureIter' else kind}")
            break
        obj = nxt
    return tuple(out)


def dump_tasks(out: TextIO | None = None) -> int:
    """Write the running loop's tasks grouped by where they wait; returns how many tasks."""
    stream = out if out is not None else sys.stderr
    tasks = asyncio.all_tasks()
    places = Counter(await_chain(t) for t in tasks)
    when = time.strftime("%H:%M:%S")
    stream.write(f"=== {len(tasks)} asyncio tasks, {len(places)} places, at {when} ===\n")
    for chain, count in places.most_common():
        stream.write(f"--- {count} task(s) waiting at:\n")
        for line in chain:
            stream.write(f"    {line}\n")
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
