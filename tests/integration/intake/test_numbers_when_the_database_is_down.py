"""Request numbers come in blocks, once per batch of submissions: unique and increasing
within a replica, and while the database is away a batch fails at once (503) and the
next one, once it is back, carries on from a fresh block."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from pymongo.errors import ConnectionFailure

from services.intake.store import ID_BLOCK, RequestStore
from tongxin.devstack.procs import free_port
from tongxin.devstack.servers import SecantusServer
from tongxin.runtime.mongo import make_client


async def test_numbers_in_blocks_and_a_fresh_block_after_an_outage() -> None:
    data = Path(tempfile.mkdtemp(prefix="tongxin-numbers-"))
    server = SecantusServer(data, free_port())
    server.start()
    client = make_client(server.uri, timeout_ms=1000)
    try:
        store = RequestStore(client.intake)
        assert await store.next_numbers("YS-20261127", 3) == [1, 2, 3]
        # a batch larger than what is left of the block: the rest of it, then a new block
        big = await store.next_numbers("YS-20261127", ID_BLOCK + 5)
        assert big == list(range(4, 4 + ID_BLOCK + 5))
        counter = await client.intake.counters.find_one({"_id": "YS-20261127"})
        assert counter is not None and counter["n"] == 2 * ID_BLOCK  # two round trips
        huge = await store.next_numbers("YS-20261127", 3 * ID_BLOCK)  # one block of its size
        assert huge == list(range(4 + ID_BLOCK + 5, 4 + 4 * ID_BLOCK + 5))
        counter = await client.intake.counters.find_one({"_id": "YS-20261127"})
        assert counter is not None
        store._blocks.clear()  # the next batch must take a new block
        await asyncio.to_thread(server.stop)
        with pytest.raises(ConnectionFailure):
            await store.next_numbers("YS-20261127", 1)
        await asyncio.to_thread(server.start)
        assert await store.next_numbers("YS-20261127", 1) == [counter["n"] + 1]
    finally:
        await client.close()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
