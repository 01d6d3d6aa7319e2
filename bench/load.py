"""The open-loop load generator and the watcher of ``notification.sent``.

Sends are scheduled on a fixed timetable (slot ``i`` at ``i / rate`` seconds) whatever the
responses do: a slot whose time has come is sent at once (late sends catch up and are
counted), unless the in-flight cap is reached, in which case it is *missed* and counted.
The watcher, an aiokafka consumer of the final topic started before the load, matches each
``notification.sent`` to its request by the record key (the request id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from bench import stats
from bench.bodies import BodyFactory
from bench.procstat import ProcWatch

SENT_TYPE = "tongxin.notification.sent.v1"
FAILED_TYPE = "tongxin.notification.failed.v1"
LATE_MS = 20.0  # a send more than this behind its slot counts as late
MAX_EARLY = 100_000  # notifications kept for ids not (yet) known: bounded
MIN_CONNECTIONS = 64  # the old fixed default; intake admits 64 writes at once
MAX_CONNECTIONS = 256  # httpcore scans its whole pool on every request (generator CPU)


def connections_for(rate: float, max_inflight: int) -> int:
    """Keep-alive connections to intake when ``--connections`` is not given: one per
    request per second, within 64..256, and never more than the in-flight cap.

    By Little's law a pool of ``rate`` connections holds ``rate × latency`` requests, so the
    generator's own queue (requests waiting in httpx for a connection, counted in the
    client-side latency) only forms once intake takes more than a second per request;
    below that, what queues does so inside intake, where its histogram sees it. The floor
    is the old fixed 64: below 64 req/s the pool is never the limit unless intake takes
    over a second (then intake, which admits 64 writes at once, queues too), and it keeps
    low-rate runs comparable with earlier results. The cap: httpcore walks every pooled
    connection on each request, so a larger pool costs the generator CPU at the very rates
    where it is short of it (a 2-core machine); at 256 the generator queues only once
    intake's latency exceeds 256 / rate s (0.26 s at 1000 req/s).

    >>> connections_for(20, 512), connections_for(100, 512), connections_for(1000, 512)
    (64, 100, 256)
    >>> connections_for(99.5, 512), connections_for(300, 128)
    (100, 128)
    """
    wanted = min(MAX_CONNECTIONS, max(MIN_CONNECTIONS, math.ceil(rate)))
    return max(1, min(wanted, max_inflight))


@dataclass
class Sample:
    """One progress reading of a phase (cumulative counters)."""

    t: float
    sent: int
    ok: int
    errors: int
    notified: int
    inflight: int

    @property
    def backlog(self) -> int:
        """Accepted requests still waiting for their first notification."""
        return self.ok - self.notified


@dataclass
class Phase:
    """One stretch of load at one rate (the fixed run, a find-max step, the warm-up)."""

    name: str
    rate: float
    duration: float
    max_inflight: int
    sent: int = 0
    ok: int = 0
    notified: int = 0
    missed: int = 0
    late: int = 0
    inflight: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    schedule_lag_ms: list[float] = field(default_factory=list)
    rids: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    load_s: float = 0.0  # wall time of the send window
    drain_s: float = 0.0  # wall time spent waiting for the remainder
    started: float = 0.0
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # set on each notified

    @property
    def error_count(self) -> int:
        """Responses that were not 2xx, and transport errors."""
        return sum(self.errors.values())

    def sample(self, now: float) -> Sample:
        """Record the counters now."""
        s = Sample(
            t=now - self.started,
            sent=self.sent,
            ok=self.ok,
            errors=self.error_count,
            notified=self.notified,
            inflight=self.inflight,
        )
        self.samples.append(s)
        return s


@dataclass
class Arrival:
    """The first ``notification.sent`` seen for a request (or for one source event type)."""

    observed_ms: float  # submit → our consumer received it
    record_ms: float  # submit → the record's timestamp (when notify produced it)


class Tracker:
    """Submit times by request id, and the notifications that answered them."""

    def __init__(self) -> None:
        self.sent_mono: dict[str, float] = {}
        self.sent_wall: dict[str, float] = {}
        self.phase_of: dict[str, Phase] = {}
        self.first: dict[str, Arrival] = {}
        self.by_source: dict[str, dict[str, Arrival]] = {}
        self.early: dict[str, list[tuple[float, float, str]]] = {}
        self.notifications = 0
        self.failed = 0
        self.foreign = 0
        self.progress = asyncio.Event()  # set whenever a request gets its first notification

    @property
    def outstanding(self) -> int:
        """Accepted requests (of every phase) still waiting for a notification."""
        return len(self.sent_mono) - len(self.first)

    def register(self, rid: str, mono: float, wall: float, phase: Phase) -> None:
        """Intake accepted ``rid``; the send started at ``mono`` / ``wall``."""
        self.sent_mono[rid] = mono
        self.sent_wall[rid] = wall
        self.phase_of[rid] = phase
        phase.rids.append(rid)
        for mono_at, ts_ms, source in self.early.pop(rid, []):
            self._match(rid, mono_at, ts_ms, source)

    def arrive(self, rid: str, mono_at: float, ts_ms: float, source: str) -> None:
        """A ``notification.sent`` for ``rid`` reached the watcher."""
        self.notifications += 1
        if rid in self.sent_mono:
            self._match(rid, mono_at, ts_ms, source)
        elif len(self.early) < MAX_EARLY:
            # the answer to the POST may still be on its way, or it is someone else's
            self.early.setdefault(rid, []).append((mono_at, ts_ms, source))
        else:
            self.foreign += 1

    def _match(self, rid: str, mono_at: float, ts_ms: float, source: str) -> None:
        arrival = Arrival(
            observed_ms=(mono_at - self.sent_mono[rid]) * 1000,
            record_ms=ts_ms - self.sent_wall[rid] * 1000,
        )
        per = self.by_source.setdefault(source, {})
        per.setdefault(rid, arrival)
        if rid not in self.first:
            self.first[rid] = arrival
            phase = self.phase_of[rid]
            phase.notified += 1
            phase.progress.set()
            self.progress.set()

    def e2e(self, rids: Iterable[str]) -> dict[str, Any]:
        """End-to-end figures of some requests: first notification, and per source type."""
        ids = list(rids)
        firsts = [self.first[r] for r in ids if r in self.first]
        out: dict[str, Any] = {
            "first_observed_ms": stats.summarize([a.observed_ms for a in firsts]),
            "first_record_ms": stats.summarize([a.record_ms for a in firsts]),
            "by_source_event": {},
        }
        wanted = set(ids)
        for source, arrivals in sorted(self.by_source.items()):
            mine = [a.observed_ms for r, a in arrivals.items() if r in wanted]
            if mine:
                out["by_source_event"][source] = stats.summarize(mine)
        return out

    def forget_unmatched(self) -> int:
        """Drop notifications of ids we never submitted (other traffic); how many."""
        n = sum(len(v) for v in self.early.values())
        self.early.clear()
        self.foreign += n
        return n


class NotificationWatcher:
    """Consumes the (prefixed) notifications topic from its end, from before the load."""

    def __init__(self, bootstrap: str, topic: str, tracker: Tracker) -> None:
        self.topic = topic
        self.tracker = tracker
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=25,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None

    async def start(self, within: float = 30.0) -> None:
        """Assign every partition at its current end, then consume in the background."""
        await self.consumer.start()
        try:
            # without a group, a subscription is assigned every partition once metadata is in
            self.consumer.subscribe([self.topic])
            deadline = time.monotonic() + within
            while not self.consumer.assignment():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no partitions of {self.topic} after {within:.0f}s")
                await asyncio.sleep(0.1)
            tps = sorted(self.consumer.assignment())
            await self.consumer.seek_to_end(*tps)
            for tp in tps:
                await self.consumer.position(tp)  # resolved now, not lazily mid-load
        except BaseException:
            await self.consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name="bench:watcher")

    async def _run(self) -> None:
        try:
            while True:
                batch = await self.consumer.getmany(timeout_ms=200, max_records=5000)
                now = time.perf_counter()
                for records in batch.values():
                    for rec in records:
                        self._record(rec, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported, never silent
            self.error = repr(exc)
            print(f"!! notification watcher stopped: {exc!r}", flush=True)

    def _record(self, rec: ConsumerRecord[bytes, bytes], now: float) -> None:
        ce_type = b""
        for k, v in rec.headers:
            if k == "ce_type":
                ce_type = bytes(v)
                break
        if ce_type == FAILED_TYPE.encode():
            self.tracker.failed += 1
            return
        if ce_type != SENT_TYPE.encode() or not rec.key:
            return
        source = "?"
        try:
            data = json.loads(rec.value or b"{}")
            source = str(data.get("source_event_type") or "?")
        except ValueError:
            pass
        self.tracker.arrive(rec.key.decode(errors="replace"), now, float(rec.timestamp), source)

    async def stop(self) -> None:
        """Stop consuming and leave."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


def skip_sniffio_lookup() -> None:
    """Make httpcore's per-request ``import sniffio`` fail at once.

    httpcore 1.0 runs ``import sniffio`` on every request to learn the async library; with
    anyio 4.16, sniffio is no longer installed, so each failed import walks ``sys.path``
    (about a quarter of the generator's CPU in a profile). A ``None`` entry in
    ``sys.modules`` fails the import immediately and httpcore assumes asyncio — what we run.
    """
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


class LoadGenerator:
    """Submits requests to intake at a fixed rate through one keep-alive client."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        factory: BodyFactory,
        tracker: Tracker,
        watches: dict[str, ProcWatch],
        *,
        quiet: bool = False,
    ) -> None:
        self.client = client
        self.factory = factory
        self.tracker = tracker
        self.watches = watches
        self.quiet = quiet
        skip_sniffio_lookup()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, phase: Phase, drain_timeout: float, request_timeout: float) -> Phase:
        """Offer ``phase.rate`` req/s for ``phase.duration`` s, then wait (bounded) for the
        remaining notifications; prints one progress line a second."""
        phase.started = time.perf_counter()
        for w in self.watches.values():
            w.begin(phase.started)
        ticker = asyncio.create_task(self._tick(phase), name="bench:progress")
        try:
            await self._offer(phase)
            phase.load_s = time.perf_counter() - phase.started
            # responses still in flight: bounded by the client's timeout
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=request_timeout + 2)
            drain_from = time.perf_counter()
            while phase.notified < phase.ok:
                left = drain_timeout - (time.perf_counter() - drain_from)
                if left <= 0:
                    break
                phase.progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(phase.progress.wait(), left)
            phase.drain_s = time.perf_counter() - drain_from
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            now = time.perf_counter()
            for w in self.watches.values():
                w.end(now)
            self._print(phase, phase.sample(now))
        return phase

    async def _offer(self, phase: Phase) -> None:
        total = round(phase.rate * phase.duration)
        start = phase.started
        i = 0
        while i < total:
            now = time.perf_counter()
            while i < total and start + i / phase.rate <= now:
                lag_ms = (now - (start + i / phase.rate)) * 1000
                phase.schedule_lag_ms.append(lag_ms)
                if lag_ms > LATE_MS:
                    phase.late += 1
                if phase.inflight >= phase.max_inflight:
                    phase.missed += 1
                else:
                    self._launch(phase)
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, start + i / phase.rate - time.perf_counter()))

    def _launch(self, phase: Phase) -> None:
        phase.sent += 1
        phase.inflight += 1
        task = asyncio.create_task(self._submit(phase))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit(self, phase: Phase) -> None:
        payload = json.dumps(self.factory.body(), ensure_ascii=False).encode()
        wall, mono = time.time(), time.perf_counter()
        try:
            r = await self.client.post(
                "/v1/requests", content=payload, headers={"content-type": "application/json"}
            )
        except httpx.TimeoutException:
            phase.errors["timeout"] += 1
            return
        except httpx.HTTPError as exc:
            phase.errors[type(exc).__name__] += 1
            self._example(phase, repr(exc))
            return
        finally:
            phase.inflight -= 1
        phase.latencies_ms.append((time.perf_counter() - mono) * 1000)
        phase.statuses[str(r.status_code)] += 1
        if 200 <= r.status_code < 300:
            try:
                rid = str(r.json()["id"])
            except (ValueError, KeyError, TypeError):
                phase.errors["bad_answer"] += 1
                self._example(phase, r.text[:200])
                return
            phase.ok += 1
            self.tracker.register(rid, mono, wall, phase)
        else:
            phase.errors[f"http_{r.status_code}"] += 1
            self._example(phase, f"{r.status_code} {r.text[:200]}")

    @staticmethod
    def _example(phase: Phase, text: str) -> None:
        if len(phase.error_examples) < 5:
            phase.error_examples.append(text)

    async def _tick(self, phase: Phase) -> None:
        n = 1
        while True:
            await asyncio.sleep(max(0.0, phase.started + n - time.perf_counter()))
            n += 1
            for w in self.watches.values():
                w.poll()
            self._print(phase, phase.sample(time.perf_counter()))

    def _print(self, phase: Phase, s: Sample) -> None:
        if self.quiet:
            return
        extra = f"  missed {phase.missed}" if phase.missed else ""
        print(
            f"[{phase.name} {phase.rate:g}/s] {s.t:6.1f}s  sent {s.sent:6d}  2xx {s.ok:6d}"
            f"  err {s.errors:4d}  notified {s.notified:6d}  backlog {s.backlog:5d}"
            f"  inflight {s.inflight:3d}{extra}",
            flush=True,
        )


def phase_figures(phase: Phase, tracker: Tracker, limit_ms: float) -> dict[str, Any]:
    """Everything measured in a phase, as plain data (summaries are :class:`stats.Summary`)."""
    load = [s for s in phase.samples if s.t <= phase.duration + 0.5]
    half = load[stats.second_half(load) :]
    times = [s.t for s in half]
    slope = stats.slope(times, [float(s.backlog) for s in half]) if len(half) >= 2 else None
    intake = stats.summarize(phase.latencies_ms)
    e2e = tracker.e2e(phase.rids)
    accepted_sustained = stats.rate_between(
        [s.t for s in load], [float(s.ok) for s in load], stats.second_half(load)
    )
    notified_sustained = stats.rate_between(
        [s.t for s in load], [float(s.notified) for s in load], stats.second_half(load)
    )
    growing = stats.backlog_growing(slope, phase.rate)
    reasons: list[str] = []
    if intake.p99 is not None and intake.p99 > limit_ms:
        reasons.append(f"intake p99 {intake.p99:.0f} ms > {limit_ms:g} ms")
    if phase.error_count:
        reasons.append(f"{phase.error_count} errors")
    if phase.missed:
        reasons.append(f"{phase.missed} sends missed (in-flight cap)")
    if growing:
        reasons.append(f"backlog growing {slope:.1f}/s")
    lag = stats.summarize(phase.schedule_lag_ms)
    return {
        "name": phase.name,
        "rate": phase.rate,
        "duration_s": phase.duration,
        "load_s": round(phase.load_s, 2),
        "drain_s": round(phase.drain_s, 2),
        "sent": phase.sent,
        "accepted": phase.ok,
        "notified": phase.notified,
        "never_notified": phase.ok - phase.notified,
        "missed": phase.missed,
        "late": phase.late,
        "schedule_lag_ms": lag,
        "statuses": dict(phase.statuses),
        "errors": dict(phase.errors),
        "error_count": phase.error_count,
        "error_examples": phase.error_examples,
        "intake_ms": intake,
        "e2e": e2e,
        "accepted_per_s": stats.rate(phase.ok, phase.load_s),
        "accepted_per_s_sustained": accepted_sustained,
        "notified_per_s_sustained": notified_sustained,
        "backlog_slope_per_s": slope,
        "backlog_growing": growing,
        "held": not reasons,
        "failed_because": reasons,
        "samples": [[round(s.t, 1), s.sent, s.ok, s.errors, s.notified, s.backlog] for s in load],
    }
