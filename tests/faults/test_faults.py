"""SPEC §6 guarantees under faults, each while requests keep coming in."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from tests.faults.conftest import DURATION, RATE, REPORT
from tests.faults.harness import BODY, FaultRun, Load, audit, under_load
from tests.support import eventually, read_topic
from tongxin.cli import SERVICES
from tongxin.contracts.topics import dlq_topic
from tongxin.devstack.procs import free_port
from tongxin.runtime.kafka import make_producer


async def check(name: str, run: FaultRun, load: Load, recovery_s: float | None = None) -> None:
    result = await audit(run, load.accepted)
    REPORT.append(
        {
            "scenario": name,
            "accepted": result.accepted,
            "processed": result.processed,
            "lost": len(result.lost),
            "duplicated": len(result.duplicated),
            "p99_ms": f"{load.p99_ms():.0f}",
            "recovery_s": "" if recovery_s is None else f"{recovery_s:.1f}",
        }
    )
    assert result.accepted > 0
    assert result.lost == [], result.lost[:10]
    assert result.duplicated == [], result.duplicated[:10]


async def test_sigkill_each_service_in_turn(fault_run: FaultRun) -> None:
    load = Load(fault_run.url("intake"), RATE, DURATION)
    recovery = 0.0

    async def fault() -> None:
        nonlocal recovery
        for name in ("routing", "volunteer", "notify", "intake"):
            fault_run.kill(name)
            t0 = time.monotonic()
            await asyncio.to_thread(fault_run.start, name)
            recovery = max(recovery, time.monotonic() - t0)

    await under_load(fault_run, load, fault)
    await check("SIGKILL each service", fault_run, load, recovery)


async def test_broker_restart_mid_load(fault_run: FaultRun) -> None:
    load = Load(fault_run.url("intake"), RATE, DURATION)
    broker = fault_run.stack.broker
    assert broker is not None
    recovery = 0.0

    async def fault() -> None:
        nonlocal recovery
        t0 = time.monotonic()
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.start)
        recovery = time.monotonic() - t0

    await under_load(fault_run, load, fault)
    await check("Kafka broker restart", fault_run, load, recovery)


async def test_database_restart_answers_503_and_recovers(fault_run: FaultRun) -> None:
    load = Load(fault_run.url("intake"), RATE, DURATION)
    db = fault_run.stack.db
    assert db is not None
    seen_503: list[int] = []
    recovery = 0.0

    async def fault() -> None:
        nonlocal recovery
        await asyncio.to_thread(db.stop)
        async with httpx.AsyncClient(base_url=fault_run.url("intake"), timeout=15) as http:
            r = await http.post("/v1/requests", json=BODY)
            seen_503.append(r.status_code)
            assert r.json()["error"]["code"] == "unavailable"
        t0 = time.monotonic()
        await asyncio.to_thread(db.start)
        async with httpx.AsyncClient(base_url=fault_run.url("intake"), timeout=15) as http:

            async def accepted() -> bool:
                return (await http.post("/v1/requests", json=BODY)).status_code == 201

            await eventually(accepted, timeout=60, interval=0.5, what="intake recovers")
        recovery = time.monotonic() - t0

    await under_load(fault_run, load, fault)
    assert seen_503 == [503]
    assert all(code == 503 for code in load.refused), dict(load.refused)
    await check("database restart", fault_run, load, recovery)


async def test_poison_messages_are_parked_and_partitions_move_on(fault_run: FaultRun) -> None:
    topics = ["tongxin.requests.v1", "tongxin.cases.v1", "tongxin.volunteer.tasks.v1"]
    load = Load(fault_run.url("intake"), RATE, DURATION)

    async def fault() -> None:
        producer = make_producer(fault_run.stack.bootstrap)
        await producer.start()
        try:
            for t in topics:
                for p in range(6):
                    await producer.send_and_wait(
                        fault_run.topic(t), value=b"\x00 not an event", key=b"poison", partition=p
                    )
        finally:
            await producer.stop()

    await under_load(fault_run, load, fault)
    await check("poison messages", fault_run, load)
    for t in topics:
        parked = await read_topic(fault_run.stack.bootstrap, dlq_topic(fault_run.topic(t)))
        poison = [r for r in parked if r.key == b"poison"]
        assert len(poison) >= 6, f"{t}: {len(poison)} poison records parked"


async def test_stalled_routing_replica_rebalances_without_duplicates(fault_run: FaultRun) -> None:
    second = fault_run.start_extra("routing", free_port())
    first = fault_run.procs["routing"]
    load = Load(fault_run.url("intake"), RATE, DURATION)

    async def fault() -> None:
        first.send_signal(signal.SIGSTOP)  # stalled past its session timeout (10 s)
        await asyncio.sleep(12)  # the stall itself is the fault
        first.send_signal(signal.SIGCONT)

    try:
        await under_load(fault_run, load, fault)
        await check("stalled routing replica", fault_run, load)
    finally:
        first.send_signal(signal.SIGCONT)
        second.terminate()
        second.wait(40)
        fault_run.extra.remove(second)


async def test_sigterm_every_service_during_load(fault_run: FaultRun) -> None:
    load = Load(fault_run.url("intake"), RATE, DURATION)
    codes: dict[str, int] = {}

    async def fault() -> None:
        for name in SERVICES:
            if name == "intake":
                continue  # the load needs the front door; intake gets its SIGTERM below
            codes[name] = await asyncio.to_thread(fault_run.terminate, name)
            await asyncio.to_thread(fault_run.start, name)

    await under_load(fault_run, load, fault)
    codes["intake"] = await asyncio.to_thread(fault_run.terminate, "intake")
    await asyncio.to_thread(fault_run.start, "intake")
    assert all(c in (0, -signal.SIGTERM) for c in codes.values()), codes
    for name in SERVICES:
        assert '"msg": "service stopped"' in (fault_run.root / "logs" / f"{name}.log").read_text()
    await check("SIGTERM every service", fault_run, load)
