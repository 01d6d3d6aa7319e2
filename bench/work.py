"""Where the work goes: database operations and Kafka records per accepted request.

Before and after a phase it reads the database's ``serverStatus`` (op counters, requests)
and ``top`` (time and count per collection), and the end offsets of every contract topic
of the run; the differences are divided by the requests accepted in the phase. SecantusDB
and MongoDB both answer these commands. Against a shared database (``--external``) other
traffic is counted too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient

from tongxin.runtime.kafka import contract_topics
from tongxin.runtime.mongo import Doc, make_client


@dataclass
class Snapshot:
    """Cumulative counters at one moment."""

    opcounters: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    # namespace -> (total time µs, count)
    top: dict[str, tuple[int, int]] = field(default_factory=dict)
    # namespace -> operation kind (insert, queries, update, commands, …) -> count
    top_ops: dict[str, dict[str, int]] = field(default_factory=dict)
    # topic -> records (sum of end offsets)
    records: dict[str, int] = field(default_factory=dict)


def per_collection(
    before: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    accepted: int,
    strip: str = "",
    limit: int = 12,
) -> list[dict[str, Any]]:
    """The busiest collections between two ``top`` readings, by time.

    >>> b = {"x_intake.requests": (1000, 10)}
    >>> a = {"x_intake.requests": (5000, 30), "x_notify.outbox": (2000, 4)}
    >>> [r["ns"] for r in per_collection(b, a, 20, strip="x_")]
    ['intake.requests', 'notify.outbox']
    >>> per_collection(b, a, 20, strip="x_")[0]["per_request"]
    1.0
    """
    rows: list[dict[str, Any]] = []
    for ns, (t1, c1) in after.items():
        t0, c0 = before.get(ns, (0, 0))
        dt, dc = t1 - t0, c1 - c0
        if dc <= 0:
            continue
        rows.append(
            {
                "ns": ns.removeprefix(strip),
                "ops": dc,
                "time_ms": round(dt / 1000, 1),
                "avg_ms": round(dt / dc / 1000, 3),
                "per_request": round(dc / accepted, 2) if accepted else None,
            }
        )
    rows.sort(key=lambda r: r["time_ms"], reverse=True)
    return rows[:limit]


def by_kind(
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    accepted: int,
    strip: str = "",
) -> dict[str, dict[str, float]]:
    """Operations per accepted request by collection and kind (``top``'s counters).

    >>> by_kind({"x_a.b": {"insert": 2}}, {"x_a.b": {"insert": 6, "queries": 2}}, 4, "x_")
    {'a.b': {'insert': 1.0, 'queries': 0.5}}
    """
    out: dict[str, dict[str, float]] = {}
    if not accepted:
        return out
    for ns, kinds in after.items():
        was = before.get(ns, {})
        row = {k: round((n - was.get(k, 0)) / accepted, 2) for k, n in kinds.items()}
        row = {k: v for k, v in row.items() if v > 0}
        if row:
            out[ns.removeprefix(strip)] = row
    return dict(sorted(out.items()))


class WorkWatch:
    """Reads the counters of the run's database and topics."""

    def __init__(self, mongodb_uri: str, bootstrap: str, topic_prefix: str, db_prefix: str):
        self.client: AsyncMongoClient[Doc] = make_client(mongodb_uri)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self.topic_prefix = topic_prefix
        self.db_prefix = db_prefix
        self.tps = [
            TopicPartition(name, p)
            for name, parts in contract_topics(topic_prefix)
            for p in range(parts)
        ]
        self.started = False

    async def start(self) -> None:
        """Connect the consumer used for end offsets."""
        await self.consumer.start()
        self.started = True

    async def snapshot(self) -> Snapshot:
        """Counters now (missing parts stay empty rather than failing the run)."""
        snap = Snapshot()
        with contextlib.suppress(Exception):
            status = await self.client.admin.command("serverStatus")
            snap.opcounters = {k: int(v) for k, v in (status.get("opcounters") or {}).items()}
            snap.requests = int((status.get("network") or {}).get("numRequests") or 0)
        with contextlib.suppress(Exception):
            top = await self.client.admin.command("top")
            for ns, v in (top.get("totals") or {}).items():
                if isinstance(v, dict) and "total" in v:
                    snap.top[ns] = (int(v["total"]["time"]), int(v["total"]["count"]))
                    snap.top_ops[ns] = {
                        kind: int(c["count"])
                        for kind in ("insert", "queries", "update", "remove", "getmore", "commands")
                        if isinstance(c := v.get(kind), dict) and c.get("count")
                    }
        if self.started:
            with contextlib.suppress(Exception):
                ends = await self.consumer.end_offsets(self.tps)
                for tp, off in ends.items():
                    snap.records[tp.topic] = snap.records.get(tp.topic, 0) + int(off)
        return snap

    def figures(self, before: Snapshot, after: Snapshot, accepted: int) -> dict[str, Any]:
        """Differences per accepted request."""

        def per(n: int) -> float | None:
            return round(n / accepted, 2) if accepted else None

        ops = {k: v - before.opcounters.get(k, 0) for k, v in after.opcounters.items()}
        records = {
            t.removeprefix(self.topic_prefix): n - before.records.get(t, 0)
            for t, n in after.records.items()
            if n - before.records.get(t, 0) > 0
        }
        db_requests = after.requests - before.requests
        return {
            "accepted": accepted,
            "db_requests": db_requests,
            "db_requests_per_request": per(db_requests),
            "db_ops": ops,
            "db_ops_per_request": {k: per(v) for k, v in ops.items() if v},
            "db_busiest_collections": per_collection(
                before.top, after.top, accepted, strip=self.db_prefix
            ),
            "db_ops_by_collection": by_kind(
                before.top_ops, after.top_ops, accepted, self.db_prefix
            ),
            "kafka_records": records,
            "kafka_records_per_request": {t: per(n) for t, n in records.items()},
        }

    async def stop(self) -> None:
        """Close both clients."""
        if self.started:
            await self.consumer.stop()
        await self.client.close()
