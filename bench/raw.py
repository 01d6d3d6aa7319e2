"""The raw baseline: what the same broker and database do without the platform.

- Kafka: bare aiokafka produce → consume with the platform's producer settings
  (``make_producer``: ``acks=all``, idempotent where supported, ``linger_ms=5``) of records
  shaped like ``request.submitted`` (CloudEvents headers, ~the same value size): a burst
  for throughput, then a paced run at the platform's rate for latency.
- Database: ``insert_one`` one at a time (latency) and from concurrent tasks (throughput),
  ``insert_many`` of 100, and a transaction writing a document plus an outbox record (the
  shape of intake's write).

Every part is bounded by a count and a time limit; the topic and database are dropped at
the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.client_session import AsyncClientSession

from bench import stats
from bench.bodies import BodyFactory
from tongxin.runtime.kafka import ensure_topics, make_producer
from tongxin.runtime.mongo import Doc, make_client

PARTITIONS = 6  # as the contract topics


def _record(factory: BodyFactory, key: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A value and headers like a ``request.submitted`` record."""
    now = datetime.now(UTC)
    data = {
        "request_id": key,
        **factory.body(),
        "submitted_at": now.isoformat(),
        "attachments": [],
    }
    value = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"/tongxin/bench"),
        ("ce_type", b"tongxin.request.submitted.v1"),
        ("ce_time", now.isoformat().encode()),
        ("ce_subject", key.encode()),
        ("content-type", b"application/json"),
    ]
    return value, headers


async def kafka_baseline(
    bootstrap: str,
    topic: str,
    factory: BodyFactory,
    *,
    idempotence: bool,
    messages: int,
    paced_rate: float,
    paced_count: int,
    time_limit: float,
) -> dict[str, Any]:
    """Produce → consume on a fresh topic: burst throughput and paced latency."""
    await ensure_topics(bootstrap, [(topic, PARTITIONS)])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=25,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = make_producer(bootstrap, idempotence=idempotence)
    await consumer.start()
    await producer.start()
    arrived: dict[bytes, float] = {}
    sent_at: dict[bytes, float] = {}

    async def consume() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.perf_counter()
            for recs in batch.values():
                for rec in recs:
                    if rec.key is not None:
                        arrived.setdefault(rec.key, now)

    task: asyncio.Task[None] | None = None
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:
            await consumer.position(tp)
        task = asyncio.create_task(consume(), name="bench:raw-consumer")
        pool = [_record(factory, f"YS-RAW-{i:06d}") for i in range(min(messages, 500))]
        size = sum(len(v) + sum(len(k) + len(h) for k, h in hs) for v, hs in pool) / len(pool)

        # burst: everything as fast as the producer takes it
        keys = [f"b-{i}".encode() for i in range(messages)]
        deadline = time.perf_counter() + time_limit
        t0 = time.perf_counter()
        futures = []
        for i, key in enumerate(keys):
            if time.perf_counter() > deadline:
                break
            value, headers = pool[i % len(pool)]
            sent_at[key] = time.perf_counter()
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.wait_for(asyncio.gather(*futures), max(1.0, deadline - time.perf_counter()))
        acked_at = time.perf_counter()
        produced = len(futures)
        while sum(1 for k in keys[:produced] if k in arrived) < produced:
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.02)
        got = [k for k in keys[:produced] if k in arrived]
        last = max((arrived[k] for k in got), default=acked_at)
        burst: dict[str, Any] = {
            "messages": produced,
            "consumed": len(got),
            "value_and_headers_bytes": round(size),
            "produce_acked_per_s": stats.rate(produced, acked_at - t0),
            "produce_consume_per_s": stats.rate(len(got), last - t0),
            "latency_ms": stats.summarize([(arrived[k] - sent_at[k]) * 1000 for k in got]),
        }
        print(
            f"raw kafka burst: {len(got)}/{produced} msgs, "
            f"{stats.fmt_num(burst['produce_consume_per_s'], '/s')} produce→consume",
            flush=True,
        )

        # paced: one record every 1/rate s, for latency at the platform's rate
        pkeys = [f"p-{i}".encode() for i in range(paced_count)]
        start = time.perf_counter()
        deadline = start + time_limit
        pending = []
        for i, key in enumerate(pkeys):
            wait = start + i / paced_rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            if time.perf_counter() > deadline:
                break
            value, headers = pool[i % len(pool)]
            sent_at[key] = time.perf_counter()
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
        await asyncio.wait_for(asyncio.gather(*pending), max(1.0, deadline - time.perf_counter()))
        while sum(1 for k in pkeys[: len(pending)] if k in arrived) < len(pending):
            if time.perf_counter() > deadline + 5:
                break
            await asyncio.sleep(0.02)
        pgot = [k for k in pkeys[: len(pending)] if k in arrived]
        paced: dict[str, Any] = {
            "rate": paced_rate,
            "messages": len(pending),
            "consumed": len(pgot),
            "latency_ms": stats.summarize([(arrived[k] - sent_at[k]) * 1000 for k in pgot]),
        }
        print(
            f"raw kafka paced {paced_rate:g}/s: p50 "
            f"{stats.fmt_num(paced['latency_ms'].p50, ' ms')}, p99 "
            f"{stats.fmt_num(paced['latency_ms'].p99, ' ms')}",
            flush=True,
        )
        return {"topic_partitions": PARTITIONS, "burst": burst, "paced": paced}
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await producer.stop()
        await consumer.stop()
        await _delete_topic(bootstrap, topic)


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        await admin.delete_topics([topic])
    except Exception as exc:  # leaving a small topic behind is not worth failing for
        print(f"(could not delete {topic}: {exc!r})", flush=True)
    finally:
        await admin.close()


def _doc(base: dict[str, Any], i: int) -> Doc:
    now = datetime.now(UTC)
    return {
        **base,
        "_id": f"YS-RAW-{i:07d}",
        "tracking_hash": "0" * 64,
        "status": "submitted",
        "submitted_at": now,
        "event_id": str(uuid.uuid4()),
        "timeline": [{"at": now, "status": "submitted", "note": "诉求已受理"}],
    }


async def _timed_workers(
    n: int, workers: int, time_limit: float, op: Callable[[int], Awaitable[None]]
) -> tuple[int, float, list[float]]:
    """Run ``op(i)`` for i < n from ``workers`` tasks; (done, seconds, latencies ms)."""
    counter = iter(range(n))
    latencies: list[float] = []
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            t = time.perf_counter()
            await op(i)
            latencies.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return len(latencies), time.perf_counter() - t0, latencies


async def db_baseline(
    uri: str,
    db_name: str,
    factory: BodyFactory,
    *,
    docs: int,
    concurrency: int,
    batch_docs: int,
    txn_docs: int,
    time_limit: float,
) -> dict[str, Any]:
    """Bare inserts into a fresh database: single (sequential and concurrent), batched,
    and a document plus an outbox record in one transaction."""
    client = make_client(uri)
    db = client[db_name]
    bases = [factory.body() for _ in range(200)]
    seq = iter(range(10**9))
    out: dict[str, Any] = {"concurrency": concurrency}
    try:
        await client.admin.command("ping")
        col = db["requests"]

        async def one(_i: int) -> None:
            n = next(seq)
            await col.insert_one(_doc(bases[n % len(bases)], n))

        n, secs, lat = await _timed_workers(max(50, docs // 4), 1, time_limit / 2, one)
        out["single_sequential"] = {
            "docs": n,
            "docs_per_s": stats.rate(n, secs),
            "latency_ms": stats.summarize(lat),
        }
        n, secs, lat = await _timed_workers(docs, concurrency, time_limit, one)
        out["single_concurrent"] = {
            "docs": n,
            "docs_per_s": stats.rate(n, secs),
            "latency_ms": stats.summarize(lat),
        }
        print(
            f"raw db insert_one: {stats.fmt_num(out['single_concurrent']['docs_per_s'], '/s')}"
            f" ({concurrency} concurrent), p50 sequential "
            f"{stats.fmt_num(out['single_sequential']['latency_ms'].p50, ' ms')}",
            flush=True,
        )

        async def batch(_i: int) -> None:
            first = next(seq)
            await db["batched"].insert_many(
                [_doc(bases[(first + j) % len(bases)], first * 1000 + j) for j in range(100)],
                ordered=False,
            )

        n, secs, lat = await _timed_workers(max(1, batch_docs // 100), 1, time_limit, batch)
        out["batched_100"] = {
            "docs": n * 100,
            "docs_per_s": stats.rate(n * 100, secs),
            "batch_latency_ms": stats.summarize(lat),
        }
        print(
            f"raw db insert_many(100): {stats.fmt_num(out['batched_100']['docs_per_s'], '/s')}",
            flush=True,
        )

        async def txn(_i: int) -> None:
            n = next(seq)
            doc = _doc(bases[n % len(bases)], n)

            async def body(session: AsyncClientSession) -> None:
                await db["txn_requests"].insert_one(doc, session=session)
                await db["txn_outbox"].insert_one(
                    {"_id": doc["event_id"], "value": b"x" * 600, "sent": False, "seq": n},
                    session=session,
                )

            async with client.start_session() as session:
                await session.with_transaction(body)

        try:
            n, secs, lat = await _timed_workers(txn_docs, concurrency, time_limit, txn)
            out["txn_doc_plus_outbox"] = {
                "docs": n,
                "docs_per_s": stats.rate(n, secs),
                "latency_ms": stats.summarize(lat),
            }
            print(
                "raw db transaction (doc + outbox): "
                f"{stats.fmt_num(out['txn_doc_plus_outbox']['docs_per_s'], '/s')}",
                flush=True,
            )
        except Exception as exc:
            out["txn_doc_plus_outbox"] = {"error": repr(exc)[:300]}
        return out
    finally:
        with contextlib.suppress(Exception):
            await client.drop_database(db_name)
        await client.close()
