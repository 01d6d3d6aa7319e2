"""``python -m bench``: load the platform, measure it against the raw stack, report.

python -m bench --quick             # smoke run: 20 req/s for 10 s, small raw baseline
python -m bench                     # 100 req/s for 30 s plus the raw baseline
python -m bench --find-max          # … then step the rate up until something gives
python -m bench --external          # against a running `tongxin up` instead
python -m bench --self-check        # the doctests of bench's pure functions
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import doctest
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench import histogram, report
from bench.bodies import BodyFactory, load_places
from bench.load import (
    LoadGenerator,
    NotificationWatcher,
    Phase,
    Tracker,
    connections_for,
    phase_figures,
)
from bench.machine import describe
from bench.procstat import ProcWatch
from bench.raw import db_baseline, kafka_baseline
from bench.target import OwnPlatform, Target, external_target, new_run_id
from bench.work import WorkWatch
from tongxin.contracts.topics import NOTIFICATIONS

DEFAULT_STEPS = "50,100,200,300,400,600,800,1000,1200,1600,2000"

# Presets; an option given on the command line wins.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "rate": 100.0,
        "duration": 30.0,
        "drain_timeout": 30.0,
        "raw_messages": 5000,
        "raw_docs": 2000,
        "raw_batch_docs": 10000,
        "raw_txn_docs": 1000,
        "raw_time_limit": 15.0,
        "step_duration": 10.0,
        "step_drain": 10.0,
        "idle": 5.0,
    },
    "quick": {
        "rate": 20.0,
        "duration": 10.0,
        "drain_timeout": 15.0,
        "raw_messages": 1000,
        "raw_docs": 500,
        "raw_batch_docs": 2000,
        "raw_txn_docs": 300,
        "raw_time_limit": 8.0,
        "step_duration": 6.0,
        "step_drain": 6.0,
        "idle": 3.0,
    },
}
SELF_CHECKED = (
    "bench.stats",
    "bench.procstat",
    "bench.sink",
    "bench.target",
    "bench.machine",
    "bench.report",
    "bench.work",
    "bench.histogram",
    "bench.load",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options, with the preset filled in."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Tongxin benchmark: open-loop load on intake, end-to-end latency to "
        "notification.sent, throughput, backlog, CPU/RSS, and the raw Kafka/database baseline.",
    )
    p.add_argument("--quick", action="store_true", help="smoke preset: 20 req/s for 10 s")
    p.add_argument("--rate", type=float, help="requests per second (default 100)")
    p.add_argument("--duration", type=float, help="seconds of load (default 30)")
    p.add_argument("--drain-timeout", type=float, help="max seconds to wait for the rest")
    p.add_argument(
        "--max-inflight", type=int, default=512, help="cap on requests in flight (else: missed)"
    )
    p.add_argument(
        "--connections",
        type=int,
        help="keep-alive connections to intake (default: one per req/s of the phase, "
        "within 64..256 and at most --max-inflight)",
    )
    p.add_argument("--request-timeout", type=float, default=10.0, help="HTTP timeout (s)")
    p.add_argument("--find-max", action="store_true", help="then step the rate up")
    p.add_argument("--steps", default=DEFAULT_STEPS, help="find-max rates, comma-separated")
    p.add_argument("--step-duration", type=float, help="seconds per find-max step")
    p.add_argument("--step-drain", type=float, help="max seconds to drain between steps")
    p.add_argument("--p99-limit-ms", type=float, default=100.0, help="find-max intake p99 limit")
    p.add_argument("--idle", type=float, help="seconds of idle measurement before the run")
    p.add_argument("--no-raw", action="store_true", help="skip the raw baseline")
    p.add_argument("--raw-messages", type=int, help="kafka burst size")
    p.add_argument("--raw-docs", type=int, help="single inserts")
    p.add_argument("--raw-batch-docs", type=int, help="docs inserted 100 at a time")
    p.add_argument("--raw-txn-docs", type=int, help="doc+outbox transactions")
    p.add_argument("--raw-concurrency", type=int, default=16, help="concurrent db tasks")
    p.add_argument("--raw-time-limit", type=float, help="max seconds per raw figure")
    p.add_argument("--external", action="store_true", help="target a running `tongxin up`")
    p.add_argument(
        "--broker",
        default=os.environ.get("TONGXIN_BROKER") or "kafka",
        choices=("kafka", "tansu", "auto"),
        help="own stack's broker (default: TONGXIN_BROKER or kafka)",
    )
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra env for the services (repeatable), e.g. TONGXIN_LOG_LEVEL=WARNING",
    )
    p.add_argument("--seed", type=int, default=20240601, help="random seed of the bodies")
    p.add_argument("--out", type=Path, default=report.RESULTS_DIR, help="results directory")
    p.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data and logs)")
    p.add_argument("--time-limit", type=float, help="hard cap on the whole run (s)")
    p.add_argument("--self-check", action="store_true", help="run the doctests and exit")
    p.add_argument("--show", type=Path, metavar="FILE", help="print the table of a results file")
    args = p.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "default"]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.rate <= 0 or args.duration <= 0:
        p.error("--rate and --duration must be positive")
    if args.connections is not None and args.connections < 1:
        p.error("--connections must be at least 1")
    # sized to the rate unless given (find-max resizes it per step then)
    args.connections_auto = args.connections is None
    if args.connections is None:
        args.connections = connections_for(args.rate, args.max_inflight)
    try:
        args.step_rates = [float(x) for x in args.steps.split(",") if x.strip()]
    except ValueError:
        p.error("--steps must be numbers separated by commas")
    env: dict[str, str] = {}
    for item in args.service_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("TONGXIN_"):
            p.error(f"--service-env wants TONGXIN_KEY=VALUE, not {item!r}")
        env[key] = value
    args.extra_env = env
    if args.time_limit is None:
        per_step = args.step_duration + args.step_drain + args.request_timeout + 5
        args.time_limit = (
            300  # stack and services start, warm-up
            + args.idle
            + (0 if args.no_raw else 6 * args.raw_time_limit + 30)
            + args.duration
            + args.drain_timeout
            + args.request_timeout
            + (len(args.step_rates) * per_step if args.find_max else 0)
            + 60
        )
    return args


def self_check() -> int:
    """Run the doctests of the pure helpers."""
    failed = tested = 0
    for name in SELF_CHECKED:
        result = doctest.testmod(importlib.import_module(name))
        failed += result.failed
        tested += result.attempted
    factory = BodyFactory(load_places(), seed=1)
    for _ in range(200):
        body = factory.body()
        phone = body["submitter"]["phone"]
        if not (len(phone) == 11 and phone[0] == "1" and phone[1] in "3456789"):
            failed += 1
            print(f"bad phone {phone}")
        tested += 1
    print(f"self-check: {tested} checks, {failed} failed")
    return 1 if failed else 0


async def measure(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Start or find the platform, run the raw baseline and the load phases."""
    run_id = results["run"]["id"]
    own: OwnPlatform | None = None
    target: Target
    factory = BodyFactory(load_places(), seed=args.seed)
    try:
        if args.external:
            target = external_target(dict(os.environ), run_id)
            print(
                f"target: running platform, intake {target.intake_url}, broker "
                f"{target.bootstrap}, prefix {target.topic_prefix!r}",
                flush=True,
            )
        else:
            own = OwnPlatform(args.broker, run_id, args.extra_env, args.keep)
            target = await own.start_stack()
        results["machine"] = describe(target.broker_kind)

        if not args.no_raw:
            print("— raw baseline —", flush=True)
            raw: dict[str, Any] = {}
            results["raw"] = raw
            try:
                raw["kafka"] = await kafka_baseline(
                    target.bootstrap,
                    f"{run_id}.bench.raw",
                    factory,
                    idempotence=target.idempotence,
                    messages=args.raw_messages,
                    paced_rate=args.rate,
                    paced_count=max(50, min(1000, int(args.rate * 3))),
                    time_limit=args.raw_time_limit,
                )
            except Exception as exc:
                raw["kafka"] = {"error": repr(exc)[:300]}
                results["notes"].append(f"raw kafka baseline failed: {exc!r}")
            try:
                raw["db"] = await db_baseline(
                    target.mongodb_uri,
                    f"{run_id}_raw",
                    factory,
                    docs=args.raw_docs,
                    concurrency=args.raw_concurrency,
                    batch_docs=args.raw_batch_docs,
                    txn_docs=args.raw_txn_docs,
                    time_limit=args.raw_time_limit,
                )
            except Exception as exc:
                raw["db"] = {"error": repr(exc)[:300]}
                results["notes"].append(f"raw database baseline failed: {exc!r}")

        if own is not None:
            await own.start_services(target)
        await load_phases(args, results, target, own, factory)
    except BaseException:
        if own is not None:
            own.failed = True  # keep the logs
        raise
    finally:
        if own is not None:
            results["service_log_bytes"] = own.log_sizes()
            await own.stop()


async def load_phases(
    args: argparse.Namespace,
    results: dict[str, Any],
    target: Target,
    own: OwnPlatform | None,
    factory: BodyFactory,
) -> None:
    """Warm-up, the fixed-rate run, then find-max when asked."""
    tracker = Tracker()
    watcher = NotificationWatcher(target.bootstrap, target.topic(NOTIFICATIONS.name), tracker)
    await watcher.start()
    watches = dict(target.watches)
    watches["bench"] = ProcWatch("bench", os.getpid())
    client = load_client(target.intake_url, args.connections, args.request_timeout)
    # /metrics on a connection of its own: never queued behind the load
    metrics = httpx.AsyncClient(base_url=target.intake_url, timeout=10.0, trust_env=False)
    gen = LoadGenerator(client, factory, tracker, watches)
    limit = args.p99_limit_ms
    work = WorkWatch(target.mongodb_uri, target.bootstrap, target.topic_prefix, target.db_prefix)

    def alive_or_note() -> bool:
        dead = own.dead_services() if own is not None else {}
        if dead:
            results["notes"].append(f"service(s) exited during the run: {dead}")
            for name in dead:
                assert own is not None
                print(f"!! {name} exited; last lines:\n{own.log_tail(name)}", flush=True)
        if watcher.error:
            results["notes"].append(f"notification watcher failed: {watcher.error}")
        return not dead and not watcher.error

    try:
        await work.start()
        r = await client.get("/readyz")
        if r.status_code != 200:
            results["notes"].append(f"intake /readyz answered {r.status_code}: {r.text[:200]}")
        print("— warm-up —", flush=True)
        warm = await gen.run(Phase("warmup", 5, 2, args.max_inflight), 60, args.request_timeout)
        results["warmup"] = phase_figures(warm, tracker, limit)
        if warm.notified == 0:
            results["notes"].append(
                "no notification.sent arrived during the warm-up: is notify running, and does "
                "it have a channel (TONGXIN_NOTIFY_WEBHOOK_URL) for these events?"
            )
        if not alive_or_note():
            return

        print(f"— idle for {args.idle:g} s (background work of the services) —", flush=True)
        results["idle"] = await measure_idle(args.idle, watches, work)

        print(
            f"— platform: {args.rate:g} req/s for {args.duration:g} s over "
            f"{args.connections} connections (in-flight cap {args.max_inflight}) —",
            flush=True,
        )
        fixed = Phase("run", args.rate, args.duration, args.max_inflight)
        before = await work.snapshot()
        server_before = await scrape_metrics(metrics, results)
        await gen.run(fixed, args.drain_timeout, args.request_timeout)
        server_after = await scrape_metrics(metrics, results)
        results["fixed"] = phase_figures(fixed, tracker, limit)
        results["fixed"]["connections"] = args.connections
        results["fixed"]["intake_server"] = server_side(server_before, server_after)
        results["work"] = work.figures(before, await work.snapshot(), fixed.ok)
        results["processes"] = {n: w.as_dict() for n, w in watches.items()}
        if not alive_or_note():
            return

        if args.find_max:
            left = await settle(tracker, args.step_drain * 3)
            if left:
                results["notes"].append(
                    f"find-max began with {left} requests of earlier phases still in the pipeline"
                )
            await find_max(args, results, gen, metrics, tracker, watches, alive_or_note)
    finally:
        results["notifications"] = {
            "sent_seen": tracker.notifications,
            "failed_seen": tracker.failed,
            "not_ours": tracker.forget_unmatched(),
        }
        await watcher.stop()
        await work.stop()
        await gen.client.aclose()  # find-max may have replaced the first one
        await metrics.aclose()


def load_client(url: str, connections: int, timeout: float) -> httpx.AsyncClient:
    """The generator's keep-alive client, ``connections`` at most."""
    # httpcore scans its whole pool on every request: a modest pool is cheaper (profiled)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=url,
        timeout=timeout,
        limits=limits,
        trust_env=False,  # loopback only: never through a proxy from the environment
    )


async def scrape_metrics(client: httpx.AsyncClient, results: dict[str, Any]) -> str | None:
    """intake's ``/metrics`` now; ``None`` (and a note, once) when it cannot be read."""
    try:
        return await histogram.scrape(client)
    except httpx.HTTPError as exc:
        note = f"intake /metrics could not be read, no server-side figures: {exc!r}"[:300]
        if note not in results["notes"]:
            results["notes"].append(note)
        return None


def server_side(before: str | None, after: str | None) -> dict[str, Any] | None:
    """intake's own histogram of ``POST /v1/requests`` between two scrapes, if both worked."""
    if before is None or after is None:
        return None
    try:
        return histogram.between(before, after)
    except ValueError as exc:  # an exposition we cannot read: say so, keep the run
        return {"error": repr(exc)[:300]}


async def measure_idle(
    seconds: float, watches: dict[str, ProcWatch], work: WorkWatch
) -> dict[str, Any]:
    """CPU and database requests while nothing is submitted (pollers, schedulers)."""
    before = await work.snapshot()
    now = time.perf_counter()
    for w in watches.values():
        w.begin(now)
    await asyncio.sleep(seconds)
    now = time.perf_counter()
    for w in watches.values():
        w.end(now)
    after = await work.snapshot()
    fig = work.figures(before, after, 0)
    return {
        "seconds": seconds,
        "cores": {n: w.as_dict()["cpu_share"] for n, w in watches.items()},
        "db_requests_per_s": round(fig["db_requests"] / seconds, 1),
        "db_busiest_collections": fig["db_busiest_collections"][:5],
    }


async def settle(tracker: Tracker, within: float) -> int:
    """Wait (bounded) until every accepted request was notified; how many were not."""
    deadline = time.monotonic() + within
    while (left := tracker.outstanding) and (wait := deadline - time.monotonic()) > 0:
        tracker.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.progress.wait(), wait)
    return left


async def find_max(
    args: argparse.Namespace,
    results: dict[str, Any],
    gen: LoadGenerator,
    metrics: httpx.AsyncClient,
    tracker: Tracker,
    watches: dict[str, ProcWatch],
    alive: Any,
) -> None:
    """Step the rate up until intake p99, errors or a growing backlog say stop."""
    fm: dict[str, Any] = {
        "step_s": args.step_duration,
        "p99_limit_ms": args.p99_limit_ms,
        "steps": [],
        "max_rate_held": None,
        "stopped_because": None,
    }
    results["find_max"] = fm
    connections = args.connections
    for rate in args.step_rates:
        if args.connections_auto and connections_for(rate, args.max_inflight) != connections:
            # nothing is in flight between steps: a pool sized to this step's rate
            connections = connections_for(rate, args.max_inflight)
            old = gen.client
            gen.client = load_client(str(old.base_url), connections, args.request_timeout)
            await old.aclose()
        print(
            f"— find-max step: {rate:g} req/s for {args.step_duration:g} s over "
            f"{connections} connections —",
            flush=True,
        )
        phase = Phase("step", rate, args.step_duration, args.max_inflight)
        server_before = await scrape_metrics(metrics, results)
        await gen.run(phase, args.step_drain, args.request_timeout)
        server_after = await scrape_metrics(metrics, results)
        fig = phase_figures(phase, tracker, args.p99_limit_ms)
        fig.pop("samples", None)
        fig["connections"] = connections
        fig["intake_server"] = server_side(server_before, server_after)
        procs = {n: w.as_dict() for n, w in watches.items()}
        fig["processes"] = {n: p["cpu_share"] for n, p in procs.items()}
        busy = [(p["cpu_share"] or 0.0, n) for n, p in procs.items() if n != "bench"]
        if busy:
            fig["busiest_cores"], fig["busiest"] = max(busy)
        fm["steps"].append(fig)
        lag_p99 = fig["schedule_lag_ms"].p99 or 0.0
        verdict = "held" if fig["held"] else "; ".join(fig["failed_because"])
        print(f"   → {verdict}", flush=True)
        if fig["held"]:
            fm["max_rate_held"] = rate
        if not alive():
            fm["stopped_because"] = "a service or the watcher stopped"
            return
        if not fig["held"]:
            fm["stopped_because"] = verdict
            return
        if lag_p99 > 100:
            fm["stopped_because"] = (
                f"the load generator fell behind its timetable (lag p99 {lag_p99:.0f} ms); "
                "higher rates would measure the harness"
            )
            return
        if phase.notified < phase.ok:
            fm["stopped_because"] = f"{phase.ok - phase.notified} requests did not drain"
            return


async def amain(args: argparse.Namespace) -> int:
    """The whole run, bounded by ``--time-limit``; always reports what it has."""
    started = datetime.now()
    results: dict[str, Any] = {
        "run": {
            "id": new_run_id(),
            "started_at": started.isoformat(timespec="seconds"),
            "mode": "external" if args.external else "own stack",
            "args": {
                k: v
                for k, v in vars(args).items()
                if k not in ("out", "self_check", "service_env", "step_rates", "show")
            },
        },
        "notes": [],
    }
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    code = 0
    t0 = time.monotonic()
    limit = asyncio.timeout(args.time_limit)
    try:
        async with limit:
            await measure(args, results)
    except TimeoutError as exc:
        if limit.expired():
            results["notes"].append(f"stopped by the time limit ({args.time_limit:.0f} s)")
        else:
            results["notes"].append(f"aborted: timed out: {exc}")
        print(f"!! {results['notes'][-1]}", file=sys.stderr, flush=True)
        code = 2
    except Exception as exc:  # reported with whatever was measured so far
        results["notes"].append(f"aborted: {exc!r}"[:2000])
        print(f"!! {exc}", file=sys.stderr, flush=True)
        code = 1
    results["run"]["finished_at"] = datetime.now().isoformat(timespec="seconds")
    results["run"]["wall_s"] = round(time.monotonic() - t0, 1)
    results["ratios"] = report.ratios(results)
    if "machine" not in results:
        return code or 1
    if not results.get("fixed"):
        code = code or 1
    print()
    print(report.render(results))
    if not args.no_save:
        path = report.write_json(results, args.out / f"{started:%Y-%m-%d-%H%M%S}.json")
        print(f"\nresults: {path}")
    return code


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]): the generator's own event loop
    costs about a third less CPU per request, so the harness saturates later."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``."""
    args = parse_args(argv)
    if args.self_check:
        return self_check()
    if args.show:
        print(report.render(report.load(args.show)))
        return 0
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # SIGTERM: everything was stopped on the way out
        print("terminated", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
