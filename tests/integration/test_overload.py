"""A service under more writes than it handles at once refuses the excess with 503 busy —
within its write budget, nothing stored — while reads and the writes in hand go on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from tests.support import on_stack, unique
from tongxin.devstack.stack import LocalStack
from tongxin.runtime.service import ServiceRuntime, Subscription, create_service_app
from tongxin.runtime.settings import ServiceSettings

release = asyncio.Event()
entered = asyncio.Event()
held: list[str] = []
router = APIRouter()


@router.post("/v1/hold/{name}")
async def hold(name: str) -> dict[str, str]:
    held.append(name)
    entered.set()
    await release.wait()
    return {"held": name}


async def setup(_rt: ServiceRuntime) -> list[Subscription]:
    return []


@pytest.fixture
async def app(stack: LocalStack) -> AsyncIterator[FastAPI]:
    run = unique("ov")
    settings = ServiceSettings(
        **on_stack(stack, run),
        http_max_concurrent_writes=1,
        http_write_wait_s=0.3,
    )
    app = create_service_app(
        name="overload", title="t", settings=settings, routers=[router], indexes=[], setup=setup
    )
    async with app.router.lifespan_context(app):
        yield app


async def test_writes_beyond_the_limit_get_busy_and_reads_go_on(app: FastAPI) -> None:
    release.clear()
    entered.clear()
    held.clear()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
        first = asyncio.create_task(http.post("/v1/hold/first"))
        await asyncio.wait_for(entered.wait(), 30)
        refused = await http.post("/v1/hold/second")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "busy"
        assert refused.headers["retry-after"] == "2"
        assert held == ["first"]  # the refused write never reached its handler
        assert (await http.get("/healthz")).status_code == 200  # reads are not limited
        release.set()
        assert (await first).json() == {"held": "first"}
        assert (await http.post("/v1/hold/third")).status_code == 200  # the turn came back
        metrics = (await http.get("/metrics")).text
    # counted under the route it was meant for
    assert (
        'tongxin_http_requests_total{method="POST",route="/v1/hold/{name}",status="503"} 1.0'
        in metrics
    )
