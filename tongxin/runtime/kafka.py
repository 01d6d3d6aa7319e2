"""Kafka clients and topic bootstrap (aiokafka). Built only from a lifespan, never at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from tongxin.contracts.topics import TOPICS, dlq_topic

log = logging.getLogger(__name__)


def make_producer(bootstrap: str, *, idempotence: bool = True) -> AIOKafkaProducer:
    """A producer with ``acks=all``; idempotent where the broker supports it."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotence,
        linger_ms=5,
        request_timeout_ms=15000,
        retry_backoff_ms=200,
    )


def contract_topics(prefix: str = "") -> list[tuple[str, int]]:
    """(name, partitions) of every contract topic and its DLQ."""
    out: list[tuple[str, int]] = []
    for t in TOPICS:
        out.append((prefix + t.name, t.partitions))
        out.append((prefix + dlq_topic(t.name), 1))
    return out


async def ensure_topics(
    bootstrap: str, topics: Iterable[tuple[str, int]], *, attempts: int = 30
) -> None:
    """Create the topics if missing (idempotent; safe from several processes at once)."""
    wanted = dict(topics)
    for i in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(name, num_partitions=p, replication_factor=1)
                for name, p in wanted.items()
                if name not in existing
            ]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
                # some brokers answer per-topic errors without raising; verify
                existing = set(await admin.list_topics())
                still = [n for n in wanted if n not in existing]
                if still:
                    raise KafkaError(f"topics not created yet: {still}")
            return
        except (KafkaError, OSError) as exc:
            if i == attempts - 1:
                raise
            log.info("broker not ready for topic bootstrap", extra={"error": repr(exc)})
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def wait_broker(bootstrap: str, attempts: int = 60, delay: float = 0.5) -> None:
    """Wait (bounded) until the broker answers a metadata request."""
    for i in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError):
            if i == attempts - 1:
                raise
            await asyncio.sleep(delay)
        finally:
            await admin.close()
