"""Fault injection under load (SPEC §6): kill, restart, poison, rebalance, SIGTERM — then
count what was lost and what was doubled.

A :class:`FaultRun` owns a stack (real Kafka with a durable log dir + SecantusDB) and the
four services as processes. A :class:`Load` submits requests at a steady rate while a
scenario injects its fault; :func:`audit` then checks every accepted request:

- routing: exactly one case, and exactly one distinct ``case.routed`` (first routing);
- volunteer: at most one task per case, no offer attempt published twice;
- notify: the staff webhook got each (event, recipient) at most once, and every
  first ``case.routed`` reached it (nothing lost).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.platform import Platform, platform_env
from tests.support import WebhookSink, headers_of, read_topic, unique
from tongxin.cli import start_services, stop_services, wait_ready
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack, StackConfig
from tongxin.runtime.mongo import Doc

BODY: dict[str, Any] = {
    "channel": "app",
    "category": "elderly_care",
    "title": "独居老人助餐",
    "description": "独居老人行动不便，需要志愿者帮忙送餐。",
    "community": "community:liyuan",
    "compound": "compound:jinyuan",
    "submitter": {"name": "李建华", "phone": "13987654321"},
}
CATEGORIES = ["elderly_care", "sanitation", "legal_aid", "public_facilities", "employment"]


@dataclass
class FaultRun(Platform):
    """A platform on a stack of its own (servers we control), restartable piece by piece."""

    root: Path = field(default_factory=Path)
    stack: LocalStack | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls) -> FaultRun:
        root = Path(tempfile.mkdtemp(prefix="tongxin-faults-"))
        cfg = StackConfig.from_env(root, kafka_port=free_port(), mongo_port=free_port())
        cfg.external_kafka = cfg.external_mongo = None  # faults need servers we control
        stack = LocalStack(cfg)
        stack.start()
        sink = WebhookSink().start()
        env = platform_env(stack.service_env(), unique("flt"), sink)
        return cls(env, sink, root / "logs", root=root, stack=stack)

    @property
    def local(self) -> LocalStack:
        assert self.stack is not None
        return self.stack

    def start_extra(self, name: str, port: int) -> subprocess.Popen[bytes]:
        """A second replica of a service on another port."""
        env = {**self.env, f"TONGXIN_{name.upper()}_PORT": str(port)}
        proc = start_services(env, [name], log_dir=self.root / f"logs-{port}")[name]
        wait_ready(env, [name], timeout=120)
        self.extra.append(proc)
        return proc

    def close(self) -> None:
        stop_services({**self.procs, **{str(i): p for i, p in enumerate(self.extra)}})
        self.local.stop()
        self.sink.stop()


@dataclass(frozen=True, slots=True)
class Sent:
    """One submission of the load: when it left, when its answer came, what it was."""

    at: float
    answered: float
    outcome: str  # "201", "503", another status code, or "error" (no answer)


Window = tuple[float, float]  # (from, to), time.monotonic()


@dataclass
class Load:
    """Steady submissions at ``rate``/s; remembers every submission and its outcome."""

    url: str
    rate: float
    duration: float
    accepted: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    async def run(self) -> None:
        n = int(self.rate * self.duration)
        start = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            tasks = []
            for i in range(n):
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the load's own timetable, not a wait
                tasks.append(asyncio.create_task(self._one(http, i)))
            await asyncio.gather(*tasks)

    async def _one(self, http: httpx.AsyncClient, i: int) -> None:
        body = {**BODY, "category": CATEGORIES[i % len(CATEGORIES)], "title": f"故障测试{i:05d}"}
        t0 = time.monotonic()
        try:
            r = await http.post("/v1/requests", json=body)
        except httpx.HTTPError:
            self.errors += 1
            self.sent.append(Sent(t0, time.monotonic(), "error"))
            return
        self.sent.append(Sent(t0, time.monotonic(), str(r.status_code)))
        if r.status_code == 201:
            self.latencies.append(time.monotonic() - t0)
            self.accepted.append(r.json()["id"])
        else:
            self.refused[r.status_code] += 1

    def outside(self, excused: list[Window]) -> list[Sent]:
        """The submissions that overlapped none of the ``excused`` windows (a fault's
        outage of the front door itself, or of the database it cannot work without)."""
        return [
            s
            for s in self.sent
            if not any(s.at <= end and s.answered >= beg for beg, end in excused)
        ]

    def p99_ms(self) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return 1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))]


@dataclass
class Audit:
    """What an audit found."""

    accepted: int
    processed: int
    lost: list[str]
    duplicated: list[str]
    # staff webhooks whose attempt was under way when notify was SIGKILLed (recorded
    # ``sending``, not received): at most once per SPEC §2, so not lost — but bounded
    in_flight: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated


async def audit(
    run: FaultRun,
    ids: list[str],
    *,
    stall: float = 90.0,
    limit: float = 900.0,
    in_flight_allowed: int = 0,
) -> Audit:
    """Wait for the pipeline to work through ``ids``, then count lost and doubled effects.

    Waiting goes on while work progresses (a backlog after a fault is slow, not lost) and
    ends when everything arrived, when nothing moved for ``stall`` s, or after ``limit`` s.
    ``stall`` outlasts the 60 s in which the database keeps a SIGKILLed process's open
    transaction (and its documents) before reaping it: the restarted service handles those
    requests after that, while everything else finished long before.
    """
    client: AsyncMongoClient[Doc] = AsyncMongoClient(run.local.mongodb_uri)
    cases = client[run.db("routing")].cases
    started = last_move = time.monotonic()
    routed, seen = 0, (-1, -1)
    while time.monotonic() - last_move < stall and time.monotonic() - started < limit:
        routed = await cases.count_documents({"request_id": {"$in": ids}})
        hooked = {b.get("request_id") for b in run.sink.matching(event_type="case.routed")}
        done = len(set(ids) & hooked)
        if routed >= len(ids) and done == len(ids):
            break
        if (routed, done) != seen:
            seen, last_move = (routed, done), time.monotonic()
        await asyncio.sleep(0.5)
    lost: list[str] = []
    duplicated: list[str] = []
    per_request: dict[str, int] = defaultdict(int)
    async for c in cases.find({"request_id": {"$in": ids}}, {"request_id": 1}):
        per_request[c["request_id"]] += 1
    unrouted = [i for i in ids if per_request.get(i, 0) == 0]
    if unrouted:
        where: dict[str, str] = {}
        for rec in await read_topic(run.local.bootstrap, run.topic("tongxin.requests.v1")):
            rid = (rec.key or b"").decode()
            if rid in unrouted and headers_of(rec).get("ce_type") == "tongxin.request.submitted.v1":
                where[rid] = f"p{rec.partition}@{rec.offset}"
        lost += [
            f"no case for {i} (submitted at {where.get(i, 'not on the topic')})" for i in unrouted
        ]
    duplicated += [f"{i}: {n} cases" for i, n in per_request.items() if n > 1]

    wanted = set(ids)
    routed_events: dict[str, set[str]] = defaultdict(set)
    for rec in await read_topic(run.local.bootstrap, run.topic("tongxin.cases.v1"), timeout=30):
        h = headers_of(rec)
        rid = (rec.key or b"").decode()
        if h.get("ce_type") != "tongxin.case.routed.v1" or rid not in wanted:
            continue
        if json.loads(rec.value).get("revision", 0) == 0:  # the first routing, not a reassignment
            routed_events[rid].add(h["ce_id"])
    lost += [f"no case.routed for {i}" for i in ids if not routed_events.get(i)]
    duplicated += [f"{i}: {len(v)} case.routed" for i, v in routed_events.items() if len(v) > 1]

    offers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rec in await read_topic(
        run.local.bootstrap, run.topic("tongxin.volunteer.tasks.v1"), timeout=30
    ):
        h = headers_of(rec)
        if h.get("ce_type") == "tongxin.task.offered.v1" and (rec.key or b"").decode() in wanted:
            data = json.loads(rec.value)
            offers[(data["task_id"], str(data.get("attempt", 1)))].add(h["ce_id"])
    duplicated += [f"offer {k}: {len(v)} events" for k, v in offers.items() if len(v) > 1]

    deliveries: dict[tuple[str, str], int] = defaultdict(int)
    for b in list(run.sink.bodies):
        if b.get("request_id") in wanted:
            deliveries[(b.get("event_id", ""), b.get("recipient", ""))] += 1
    duplicated += [f"webhook {k}: {n}x" for k, n in deliveries.items() if n > 1]
    hooked = {b.get("request_id") for b in run.sink.matching(event_type="case.routed")}
    deliveries_col = client[run.db("notify")].deliveries
    in_flight: list[str] = []
    for i in ids:
        if i in hooked:
            continue
        found = [
            d async for d in deliveries_col.find({"request_id": i, "event_type": "case.routed"})
        ]
        states = [f"{d.get('recipient')}/{d.get('channel')}={d.get('status')}" for d in found]
        webhook = [d.get("status") for d in found if d.get("channel") == "webhook"]
        what = f"no case.routed webhook for {i} (notify deliveries: {states})"
        if webhook == ["sending"] and len(in_flight) < in_flight_allowed:
            in_flight.append(what)
        else:
            lost.append(what)
    await client.close()
    return Audit(len(ids), routed, lost, duplicated, in_flight)


Scenario = Callable[[FaultRun, Load], Awaitable[None]]


async def under_load(run: FaultRun, load: Load, fault: Callable[[], Awaitable[None]]) -> None:
    """Run the load and, a third of the way in, the fault."""
    task = asyncio.create_task(load.run())
    await asyncio.sleep(load.duration / 3)  # the fault lands mid-load, by design
    await fault()
    await task


async def recovered(run: FaultRun, *, timeout: float = 60.0) -> float:
    """Seconds until the platform works again: intake accepts a new request and the
    pipeline delivers again — a first ``case.routed`` reaches the staff webhook after
    the fault ended (the last hop; the backlog the outage left drains behind it, and the
    audit waits for all of it)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    before = len(run.sink.matching(event_type="case.routed"))
    body = {**BODY, "title": "恢复探测"}
    accepted = False
    async with httpx.AsyncClient(base_url=run.url("intake"), timeout=5) as http:
        while not accepted and time.monotonic() < deadline:
            try:
                accepted = (await http.post("/v1/requests", json=body)).status_code == 201
            except httpx.HTTPError:
                pass
            if not accepted:
                await asyncio.sleep(0.2)  # the probe's own pace while the front door is away
    assert accepted, f"intake accepted nothing within {timeout:.0f}s"
    while time.monotonic() < deadline:
        if len(run.sink.matching(event_type="case.routed")) > before:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing reached the webhook within {timeout:.0f}s")
