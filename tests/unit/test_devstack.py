"""The local stack's launchers (pure parts)."""

from __future__ import annotations

from pathlib import Path

from pymongo import MongoClient

from tongxin.devstack.kafka import new_cluster_id
from tongxin.devstack.servers import SecantusServer


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(2000)]  # ~31 would start with "-" if not redrawn
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)


def test_the_local_database_is_used_without_retryable_writes() -> None:
    """SecantusDB's bookkeeping of retryable writes slows every transaction once 10,000
    accumulate (tongxin/devstack/servers.py); the platform's clients must not make them."""
    server = SecantusServer(Path("/nonexistent"), 27999)
    client: MongoClient[dict[str, object]] = MongoClient(server.uri, connect=False)
    try:
        assert client.options.retry_writes is False
        assert client.options.direct_connection is True
    finally:
        client.close()
