"""The closing report: ratios to the raw baseline, the plain-text table, the JSON file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stats import Summary, fmt_num, fmt_ratio, ratio, table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SERVICE_ORDER = ("intake", "routing", "volunteer", "notify", "kafka", "tansu", "secantusdb")


def _get(d: Any, *path: str) -> Any:
    """``d[a][b]…`` or ``None`` when any step is missing.

    >>> _get({"a": {"b": 1}}, "a", "b"), _get({"a": {}}, "a", "b", "c")
    (1, None)
    """
    for key in path:
        if isinstance(d, dict):
            d = d.get(key)
        elif dataclasses.is_dataclass(d) and not isinstance(d, type):
            d = getattr(d, key, None)
        else:
            return None
    return d


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every platform figure next to the raw figure it is compared with."""
    raw, run = results.get("raw") or {}, results.get("fixed") or {}
    kafka, db = raw.get("kafka") or {}, raw.get("db") or {}
    insert_s = _get(db, "single_concurrent", "docs_per_s")
    txn_s = _get(db, "txn_doc_plus_outbox", "docs_per_s")
    batch_s = _get(db, "batched_100", "docs_per_s")
    pc_s = _get(kafka, "burst", "produce_consume_per_s")
    seq = _get(db, "single_sequential", "latency_ms")
    paced = _get(kafka, "paced", "latency_ms")
    intake: Summary | None = run.get("intake_ms")
    e2e: Summary | None = _get(run, "e2e", "first_observed_ms")
    out: list[dict[str, Any]] = []

    def add(figure: str, value: float | None, raw_name: str, raw_value: float | None) -> None:
        out.append(
            {
                "figure": figure,
                "value": value,
                "raw": raw_name,
                "raw_value": raw_value,
                "ratio": ratio(value, raw_value),
            }
        )

    acc = run.get("accepted_per_s_sustained")
    notified = run.get("notified_per_s_sustained")
    add("intake accepted/s (sustained)", acc, "db insert_one/s (concurrent)", insert_s)
    add("intake accepted/s (sustained)", acc, "db txn doc+outbox/s", txn_s)
    add("intake accepted/s (sustained)", acc, "db insert_many(100) docs/s", batch_s)
    add("e2e notified/s (sustained)", notified, "kafka produce→consume/s", pc_s)
    for q in ("p50", "p99"):
        add(f"intake latency {q} ms", _get(intake, q), f"db insert_one {q} ms", _get(seq, q))
    for q in ("p50", "p99"):
        add(f"e2e latency {q} ms", _get(e2e, q), f"kafka paced {q} ms", _get(paced, q))
    best = _get(results, "find_max", "max_rate_held")
    if best is not None:
        add("find-max rate held req/s", best, "db insert_one/s (concurrent)", insert_s)
        add("find-max rate held req/s", best, "db txn doc+outbox/s", txn_s)
        add("find-max rate held req/s", best, "kafka produce→consume/s", pc_s)
    return out


def _p50_99(s: Summary | None) -> str:
    if s is None or s.count == 0:
        return ""
    return f"latency p50 {fmt_num(s.p50)} / p99 {fmt_num(s.p99)} ms"


def _phase(title: str, ph: dict[str, Any], *, brief: bool = False) -> str:
    statuses = ", ".join(f"{c}: {n}" for c, n in sorted((ph.get("statuses") or {}).items()))
    errors = ", ".join(f"{c}: {n}" for c, n in sorted((ph.get("errors") or {}).items()))
    rows = [
        ("sent / accepted (2xx)", f"{ph['sent']} / {ph['accepted']}"),
        ("statuses", statuses or "-"),
        ("errors", errors or "0"),
        (
            "missed (in-flight cap) / late sends",
            f"{ph['missed']} / {ph['late']}  (schedule lag p99 "
            f"{fmt_num(_get(ph, 'schedule_lag_ms', 'p99'), ' ms')})",
        ),
        ("accepted/s, sustained (2nd half)", fmt_num(ph.get("accepted_per_s_sustained"), "/s")),
        ("notified/s, sustained (2nd half)", fmt_num(ph.get("notified_per_s_sustained"), "/s")),
        (
            "backlog slope, 2nd half",
            fmt_num(ph.get("backlog_slope_per_s"), "/s")
            + ("  growing" if ph.get("backlog_growing") else "  flat"),
        ),
        (f"never notified (waited {ph['drain_s']:.1f} s)", str(ph["never_notified"])),
    ]
    if brief:  # too short for rates: what it says is whether the pipeline answers at all
        first = _get(ph, "e2e", "first_observed_ms")
        rows = [
            *rows[:3],
            ("intake latency", _p50_99(ph.get("intake_ms"))),
            ("e2e to first notification.sent", _p50_99(first)),
            rows[-1],
        ]
    over = f" over {ph['connections']} connections" if ph.get("connections") else ""
    return table(
        f"\n{title}: {ph['rate']:g} req/s for {ph['duration_s']:g} s{over}",
        ("figure", "value"),
        rows,
    )


def _lat_row(name: str, s: Summary | None) -> tuple[str, ...]:
    """One row of the latency table (a histogram's summary has no max: ``-``).

    >>> _lat_row("x", Summary(3, 2.0, 1.5, 2.5, 2.9, None))
    ('x', '1.50', '2.50', '2.90', '-', '2.00', '3')
    """
    if s is None or s.count == 0:
        return (name, "-", "-", "-", "-", "-", "0")
    return (
        name,
        fmt_num(s.p50),
        fmt_num(s.p95),
        fmt_num(s.p99),
        fmt_num(s.max),
        fmt_num(s.mean),
        str(s.count),
    )


def _latencies(ph: dict[str, Any], raw: dict[str, Any]) -> str:
    e2e = ph.get("e2e") or {}
    rows = [_lat_row("intake POST /v1/requests", ph.get("intake_ms"))]
    server = ph.get("intake_server")
    if server:  # intake's own histogram: bucket-interpolated, without the generator's queue
        rows.append(_lat_row("intake, server side (histogram)", server.get("ms")))
    rows += [
        _lat_row("e2e to first notification.sent", e2e.get("first_observed_ms")),
        _lat_row("  same, by record timestamp", e2e.get("first_record_ms")),
    ]
    for source, s in (e2e.get("by_source_event") or {}).items():
        rows.append(_lat_row(f"  to the notice of {source}", s))
    paced = _get(raw, "kafka", "paced")
    if paced:
        rows.append(
            _lat_row(
                f"raw kafka produce→consume {fmt_num(paced.get('rate'))}/s", paced.get("latency_ms")
            )
        )
    seq = _get(raw, "db", "single_sequential", "latency_ms")
    if seq:
        rows.append(_lat_row("raw db insert_one, sequential", seq))
    return table("  latency, ms", ("", "p50", "p95", "p99", "max", "mean", "n"), rows)


def _compared(rows: Sequence[dict[str, Any]]) -> str:
    out = [
        (
            r["figure"],
            fmt_num(r["value"]),
            r["raw"],
            fmt_num(r["raw_value"]),
            fmt_ratio(r["ratio"]),
        )
        for r in rows
        if not r["figure"].startswith("find-max")
    ]
    return table(
        "  compared with the raw stack", ("figure", "value", "raw figure", "raw", "ratio"), out
    )


def render(results: dict[str, Any]) -> str:
    """The plain-text report of a run."""
    m = results.get("machine") or {}
    run_info = results.get("run") or {}
    parts: list[str] = []
    head = (
        f"Tongxin benchmark {run_info.get('started_at', '')}  run {run_info.get('id', '')}"
        f"  ({run_info.get('mode', '')})"
    )
    parts.append(head)
    parts.append(
        f"machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('cores_usable')} usable), "
        f"{m.get('memory_gib')} GiB, kernel {m.get('kernel')}, load avg at start "
        f"{' '.join(str(x) for x in m.get('load_avg_at_start') or [])}\n"
        f"software: Python {m.get('python')}, Apache Kafka {m.get('kafka')} "
        f"(broker: {m.get('broker')}), SecantusDB {m.get('secantusdb')}, aiokafka "
        f"{m.get('aiokafka')}, pymongo {m.get('pymongo')}, httpx {m.get('httpx')}, "
        f"git {m.get('git')}{' (dirty)' if m.get('git_dirty') else ''}"
    )

    raw = results.get("raw")
    if raw:
        k, d = raw.get("kafka") or {}, raw.get("db") or {}
        rows = [
            (
                "kafka produce→consume, burst (acks=all)",
                fmt_num(_get(k, "burst", "produce_consume_per_s"), " msg/s"),
                f"{_get(k, 'burst', 'messages')} msgs of ~"
                f"{_get(k, 'burst', 'value_and_headers_bytes')} B; "
                + _p50_99(_get(k, "burst", "latency_ms")),
            ),
            (
                "kafka produce acked, burst",
                fmt_num(_get(k, "burst", "produce_acked_per_s"), " msg/s"),
                "",
            ),
            (
                f"kafka produce→consume, paced {fmt_num(_get(k, 'paced', 'rate'))}/s",
                "",
                _p50_99(_get(k, "paced", "latency_ms")),
            ),
            (
                "db insert_one, sequential",
                fmt_num(_get(d, "single_sequential", "docs_per_s"), " docs/s"),
                _p50_99(_get(d, "single_sequential", "latency_ms")),
            ),
            (
                f"db insert_one, {d.get('concurrency')} concurrent",
                fmt_num(_get(d, "single_concurrent", "docs_per_s"), " docs/s"),
                _p50_99(_get(d, "single_concurrent", "latency_ms")),
            ),
            (
                "db insert_many(100)",
                fmt_num(_get(d, "batched_100", "docs_per_s"), " docs/s"),
                "per batch " + _p50_99(_get(d, "batched_100", "batch_latency_ms")),
            ),
            (
                f"db txn doc+outbox, {d.get('concurrency')} concurrent",
                fmt_num(_get(d, "txn_doc_plus_outbox", "docs_per_s"), " docs/s"),
                _get(d, "txn_doc_plus_outbox", "error")
                or _p50_99(_get(d, "txn_doc_plus_outbox", "latency_ms")),
            ),
        ]
        for part in ("kafka", "db"):
            if _get(raw, part, "error"):
                rows.append((f"{part} baseline failed", "", str(_get(raw, part, "error"))))
        parts.append(
            table("\nRaw baseline (same broker and database)", ("figure", "value", ""), rows)
        )

    for key, title in (("warmup", "Warm-up"), ("fixed", "Platform")):
        ph = results.get(key)
        if not ph:
            continue
        parts.append(_phase(title, ph, brief=key == "warmup"))
        if key == "fixed":
            parts.append(_latencies(ph, raw or {}))
            parts.append(_compared(results.get("ratios") or []))
    procs = results.get("processes") or {}
    idle = (results.get("idle") or {}).get("cores") or {}
    if procs:
        names = sorted(procs, key=lambda n: (*SERVICE_ORDER, n).index(n))
        rows3 = [
            (
                n,
                fmt_num(procs[n].get("cpu_s")),
                fmt_num(procs[n].get("cpu_share")),
                fmt_num(idle.get(n)),
                fmt_num(procs[n].get("max_rss_mib"), " MiB"),
                fmt_num(procs[n].get("peak_rss_mib"), " MiB"),
                "" if procs[n].get("alive", True) else "exited",
            )
            for n in names
        ]
        parts.append(
            table(
                "\nProcesses during the platform run (CPU seconds; cores busy on average)",
                ("process", "cpu s", "cores", "cores idle", "max RSS", "peak RSS (life)", ""),
                rows3,
            )
        )

    if results.get("idle"):
        i = results["idle"]
        busy = ", ".join(f"{c['ns']} {c['ops']}" for c in i.get("db_busiest_collections") or [])
        parts.append(
            f"  idle ({i['seconds']:g} s, no load): database {fmt_num(i['db_requests_per_s'])}"
            f" requests/s" + (f" ({busy})" if busy else "")
        )

    work = results.get("work")
    if work and work.get("accepted"):
        ops = ", ".join(f"{k} {fmt_num(v)}" for k, v in work["db_ops_per_request"].items())
        recs = ", ".join(
            f"{t} {fmt_num(v)}" for t, v in sorted(work["kafka_records_per_request"].items())
        )
        parts.append(
            "\nWork per accepted request (platform run, including the drain)\n"
            f"  database round trips: {fmt_num(work['db_requests_per_request'])}"
            f"  ({ops or 'no op counters'})\n"
            f"  kafka records: {recs or '-'}"
        )
        rows5 = [
            (
                c["ns"],
                str(c["ops"]),
                fmt_num(c["per_request"]),
                fmt_num(c["time_ms"], " ms"),
                fmt_num(c["avg_ms"], " ms"),
            )
            for c in work.get("db_busiest_collections") or []
        ]
        if rows5:
            parts.append(
                table(
                    "  busiest collections (database time, from `top`)",
                    ("collection", "ops", "per request", "total", "avg"),
                    rows5,
                )
            )

    fm = results.get("find_max")
    if fm:
        rows4 = [
            (
                f"{s['rate']:g}",
                str(s.get("connections") or "-"),
                fmt_num(s.get("accepted_per_s_sustained")),
                fmt_num(s.get("notified_per_s_sustained")),
                fmt_num(_get(s, "intake_ms", "p99")),
                fmt_num(_get(s, "intake_server", "ms", "p99")),
                fmt_num(_get(s, "e2e", "first_observed_ms", "p99")),
                fmt_num(s.get("backlog_slope_per_s")),
                str(s.get("error_count", 0)),
                fmt_num(s.get("busiest_cores")) + f" {s.get('busiest') or ''}",
                "held" if s["held"] else "; ".join(s["failed_because"]),
            )
            for s in fm.get("steps", [])
        ]
        parts.append(
            table(
                f"\nFind max ({fm.get('step_s'):g} s steps; held = intake p99 ≤ "
                f"{fm.get('p99_limit_ms'):g} ms, no errors, backlog flat)",
                (
                    "req/s",
                    "conns",
                    "accepted/s",
                    "notified/s",
                    "intake p99",
                    "server p99",
                    "e2e p99",
                    "backlog/s",
                    "errors",
                    "busiest",
                    "verdict",
                ),
                rows4,
            )
        )
        best = fm.get("max_rate_held")
        rr = results.get("ratios") or []
        extra = ", ".join(
            f"{fmt_ratio(r['ratio'])} of {r['raw']}"
            for r in rr
            if r["figure"].startswith("find-max") and r["ratio"] is not None
        )
        parts.append(
            f"  highest rate that held: {f'{best:g} req/s' if best else 'none'}"
            + (f"  ({extra})" if extra else "")
            + (f"; stopped: {fm['stopped_because']}" if fm.get("stopped_because") else "")
        )

    for note in results.get("notes") or []:
        parts.append(f"note: {note}")
    return "\n".join(parts)


def _default(o: Any) -> Any:
    if isinstance(o, Summary):
        return o.as_dict()
    if isinstance(o, float):
        return round(o, 3)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _rounded(o: Any) -> Any:
    if isinstance(o, float):
        return round(o, 3)
    if isinstance(o, Summary):
        return o.as_dict()
    if isinstance(o, dict):
        return {k: _rounded(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_rounded(v) for v in o]
    return o


def _rehydrate(o: Any) -> Any:
    if isinstance(o, dict):
        if set(o) == {"count", "mean", "p50", "p95", "p99", "max"}:
            return Summary(**o)
        return {k: _rehydrate(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_rehydrate(v) for v in o]
    return o


def load(path: Path) -> dict[str, Any]:
    """A results file, with its latency summaries as :class:`Summary` again (``--show``)."""
    data: dict[str, Any] = _rehydrate(json.loads(path.read_text(encoding="utf-8")))
    return data


def write_json(results: dict[str, Any], path: Path) -> Path:
    """Everything of the run, rounded to three decimals (small enough to commit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_rounded(results), ensure_ascii=False, indent=1, default=_default)
    path.write_text(text + "\n", encoding="utf-8")
    return path
