"""Request numbers while the database is away: the callers queued on the number block all
get the allocation's error at once (503), not one database timeout after another."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from pymongo.errors import ConnectionFailure

from services.intake.store import RequestStore
from tongxin.devstack.procs import free_port
from tongxin.devstack.servers import SecantusServer
from tongxin.runtime.mongo import make_client


async def test_queued_callers_share_one_failed_allocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = Path(tempfile.mkdtemp(prefix="tongxin-numbers-"))
    server = SecantusServer(data, free_port())
    server.start()
    client = make_client(server.uri, timeout_ms=1000)
    try:
        store = RequestStore(client.intake)
        assert await store.next_number("YS-20261127") == 1
        store._blocks.clear()  # the next caller must take a new block
        await asyncio.to_thread(server.stop)
        attempts = 0
        take = store._take_block

        async def counted(day_key: str, size: int) -> int:
            nonlocal attempts
            attempts += 1
            return await take(day_key, size)

        monkeypatch.setattr(store, "_take_block", counted)
        outcomes = await asyncio.gather(
            *(store.next_number("YS-20261127") for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(o, ConnectionFailure) for o in outcomes), outcomes
        assert attempts == 1  # one wait for the database, shared by all ten
        await asyncio.to_thread(server.start)
        assert await store.next_number("YS-20261127") == 33  # the next block, once it is back
    finally:
        await client.close()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
