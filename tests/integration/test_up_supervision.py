"""`tongxin up` keeps the platform running: a service, the broker and the database killed
with SIGKILL are restarted, the platform answers again, and the requests submitted around
the service's and the broker's kill are routed once, as are those after the database's;
SIGTERM then stops everything and leaves no process behind.

`tongxin up` runs as a real subprocess on a stack of its own (the broker the suite uses,
``TONGXIN_BROKER``, and SecantusDB), on free ports and a temporary data directory. Killed:
routing (a consumer and producer in a transaction: the representative service — the
others restart through the same code path), the broker and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.support import eventually, headers_of, read_topic, unique
from tongxin.cli import SERVICES
from tongxin.devstack.procs import free_port
from tongxin.runtime.mongo import Doc

# What the test holds: the platform answers again by itself, without anyone restarting it.
# The seconds it took are printed, not asserted (a shared machine's load decides them): on
# the 2-core development machine 2–5 s after a service or the database, 7–10 s after the
# broker (the target is 15 s); under a CI run beside two other test runs the broker
# once took longer than 15 s. Polled, so a quick recovery passes early.
RECOVERY_S = 60.0

REQUEST = {
    "category": "sanitation",
    "title": "楼道垃圾堆放",
    "description": "3单元楼道堆放垃圾多日无人清理。",
    "community": "community:liyuan",
    "compound": "compound:liyuan-jiayuan",
    "submitter": {"name": "张秀英", "phone": "13812341234"},
}


@dataclass
class Up:
    """A running `tongxin up` and how to reach what it started."""

    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    run: str
    log_path: Path
    kafka_port: int
    mongo_port: int

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.env[f'TONGXIN_{name.upper()}_PORT']}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self, needle: str = "") -> list[int]:
        """Processes started for this run (its marker in their environment) whose command
        line contains ``needle``."""
        return _marked(self.run, needle)


def _marked(run: str, needle: str = "") -> list[int]:
    marker = f"TONGXIN_TEST_RUN={run}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker not in (d / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if needle in cmdline and (d / "stat").read_text().split()[2] != "Z":
                out.append(int(d.name))
    return out


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    run = unique("up")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TONGXIN_KAFKA_BOOTSTRAP", "TONGXIN_MONGODB_URI")  # start its own
    }
    env |= {
        "TONGXIN_TEST_RUN": run,
        "TONGXIN_ENV": "test",
        "TONGXIN_INTAKE_ANONYMOUS_LIMIT": "false",
        "TONGXIN_TOPIC_PREFIX": f"{run}.",
        "TONGXIN_DB_PREFIX": f"{run}_",
        "TONGXIN_OUTBOX_POLL_INTERVAL_S": "0.2",
        "PYTHONUNBUFFERED": "1",
        **{f"TONGXIN_{name.upper()}_PORT": str(free_port()) for name in SERVICES},
    }
    kafka_port, mongo_port = free_port(), free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tongxin.cli", "up", "--data-dir", str(tmp_path / "var")),
                *("--kafka-port", str(kafka_port), "--mongo-port", str(mongo_port)),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    u = Up(proc, env, run, log_path, kafka_port, mongo_port)
    try:
        yield u
    finally:  # whatever happened: leave nothing running
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        for pid in _marked(run):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ready(up: Up, name: str) -> bool:
    try:
        return httpx.get(f"{up.url(name)}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _answers(up: Up) -> bool:
    return all(_ready(up, name) for name in SERVICES)


def _wait(check: object, timeout: float, what: str, up: Up) -> float:
    """Poll ``check`` until true; seconds it took. Fails with the end of the log."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        assert up.proc.poll() is None, f"tongxin up exited while {what}:\n{up.log()[-3000:]}"
        if check():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout:.0f} s:\n{up.log()[-3000:]}")


def _submit(up: Up, n: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=up.url("intake"), timeout=10) as http:
        for _ in range(n):
            r = http.post("/v1/requests", json=REQUEST)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    return ids


def _kill(up: Up, what: str, needle: str) -> None:
    pids = up.pids(needle)
    assert len(pids) == 1, f"{what}: expected one process matching {needle!r}, found {pids}"
    os.kill(pids[0], signal.SIGKILL)


def _error_lines(text: str) -> list[str]:
    """Lines a service or the supervisor wrote at ERROR level."""
    return [line for line in text.splitlines() if re.match(r"^\S+\s*\| \S+ error\b", line)]


def test_killed_processes_come_back_and_every_request_is_routed_once(up: Up) -> None:
    _wait(lambda: _answers(up), 180, "up", up)
    _wait(lambda: "Tongxin is up" in up.log(), 10, "announced", up)
    start = up.log()
    assert not _error_lines(start), "a normal start logged errors:\n" + "\n".join(
        _error_lines(start)
    )
    assert f"{up.url('intake')}/console/" in start
    assert f"{up.url('routing')}/docs" in start

    ids = _submit(up, 3)
    recovered: dict[str, float] = {}
    broker = "kafka.Kafka" if "broker: kafka at" in start else "--listener-url"
    kills = (
        *((name, f"tongxin.cli serve {name}") for name in ("routing", "volunteer", "notify")),
        ("intake", "tongxin.cli serve intake"),
        ("broker", broker),
        ("database", "-m tongxin.devstack.secantus_main"),
    )
    for what, needle in kills:
        ids += _submit(up, 3)  # just before it dies (acknowledged: they must survive it)
        _kill(up, what, needle)
        if what not in ("intake", "database"):  # intake accepts while the others are away
            ids += _submit(up, 2)
        recovered[what] = _wait(lambda: _answers(up), RECOVERY_S, f"answering after {what}", up)
        ids += _submit(up, 3)
    # every acknowledged request, the database's SIGKILL included (the local database syncs
    # each commit's journal record before it answers: tongxin/devstack/servers.py)
    asyncio.run(_routed_once(up, ids))

    log = up.log()
    for what, _ in kills:
        assert re.search(rf"supervisor\| {what} killed by SIGKILL; restarting it in 1 s", log)
        assert f"supervisor| {what} ready again (restart 1)" in log
    assert up.proc.poll() is None
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(90) == 0
    tail = up.log()[-2000:]
    summary = re.search(r"restarts: (.*) \(total \d+\)", tail)
    assert summary, tail
    counts = dict(pair.rsplit(" ", 1) for pair in summary.group(1).split(", "))
    assert counts == {what: "1" for what, _ in kills}, tail
    assert not up.pids(), f"left running: {up.pids()}"
    print(f"\n[up] answered again after: {recovered}")


async def _routed_once(up: Up, ids: list[str]) -> None:
    """Each request has one case and one first ``case.routed`` (the faults audit's rule)."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{up.mongo_port}/?directConnection=true"
    )
    cases = client[f"{up.run}_routing"].cases
    try:

        async def all_routed() -> bool:
            return await cases.count_documents({"request_id": {"$in": ids}}) >= len(ids)

        # a bound for a slow machine: a SIGKILLed routing's open transaction can hold its
        # requests until the database reaps it (60 s)
        try:
            await eventually(all_routed, timeout=120, interval=0.5, what="every request routed")
        except AssertionError as err:
            have = {c["request_id"] async for c in cases.find({"request_id": {"$in": ids}})}
            missing = sorted(set(ids) - have)
            raise AssertionError(f"no case for {missing}:\n{up.log()[-3000:]}") from err
        per_request: dict[str, int] = defaultdict(int)
        async for c in cases.find({"request_id": {"$in": ids}}, {"request_id": 1}):
            per_request[c["request_id"]] += 1
    finally:
        await client.close()
    assert {i: n for i, n in per_request.items() if n != 1} == {}
    assert set(per_request) == set(ids)

    routed: dict[str, set[str]] = defaultdict(set)
    records = await read_topic(
        f"127.0.0.1:{up.kafka_port}", f"{up.run}.tongxin.cases.v1", min_count=len(ids)
    )
    for rec in records:
        h = headers_of(rec)
        rid = (rec.key or b"").decode()
        first = h.get("ce_type") == "tongxin.case.routed.v1" and rid in ids
        if first and json.loads(rec.value).get("revision", 0) == 0:  # not a reassignment
            routed[rid].add(h["ce_id"])
    assert {i: len(v) for i, v in routed.items() if len(v) != 1} == {}
    assert set(routed) == set(ids), f"no case.routed for {set(ids) - set(routed)}"
