"""The SIGUSR1 task dump follows each task's await chain and groups tasks by place."""

from __future__ import annotations

import asyncio
import io

from tongxin.runtime.debug import dump_tasks


async def inner_wait(gate: asyncio.Event) -> None:
    await gate.wait()


async def outer(gate: asyncio.Event) -> None:
    await inner_wait(gate)


async def test_tasks_waiting_at_one_place_are_one_entry_with_the_innermost_frame() -> None:
    gate = asyncio.Event()
    tasks = [asyncio.create_task(outer(gate)) for _ in range(5)]
    await asyncio.sleep(0)  # let them reach the gate
    buf = io.StringIO()
    n = dump_tasks(buf)
    gate.set()
    await asyncio.gather(*tasks)
    text = buf.getvalue()
    assert n >= 6  # the five and this test's own task
    entry = text.split("--- 5 task(s) waiting at:\n", 1)[1]
    lines = entry.splitlines()
    assert "in outer" in lines[0]
    assert "in inner_wait" in lines[1]
    assert "in wait" in lines[2]  # asyncio.Event.wait, inside the chain
    assert lines[3].strip() == "awaiting Future"
