"""The local stack's launchers (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymongo import MongoClient

from tongxin.cli import _ReplayProgress
from tongxin.devstack.kafka import downloaded_jar, new_cluster_id
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


def test_fetching_kafka_reports_each_downloaded_jar_and_nothing_else() -> None:
    url = "https://repo.maven.apache.org/maven2/org/apache/kafka/kafka-clients/4.1.1"
    assert (
        downloaded_jar(
            f"[INFO] Downloaded from central: {url}/kafka-clients-4.1.1.jar (12 MB at 3.1 MB/s)"
        )
        == "kafka-clients-4.1.1.jar (12 MB)"
    )
    assert downloaded_jar(f"Downloaded from central: {url}/kafka-clients-4.1.1.jar (3.2 kB)") == (
        "kafka-clients-4.1.1.jar (3.2 kB)"
    )
    assert (
        downloaded_jar(
            f"[INFO] Downloaded from central: {url}/kafka-clients-4.1.1.pom (2 kB at 9 kB/s)"
        )
        is None
    )
    assert downloaded_jar(f"[INFO] Downloading from central: {url}/kafka-clients-4.1.1.jar") is None
    assert downloaded_jar("[INFO] BUILD SUCCESS") is None


async def test_dlq_replay_says_every_hundred_records_how_many_went_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sent: list[tuple[str, bytes]] = []

    class Producer:
        async def send_and_wait(self, topic: str, value: bytes) -> int:
            sent.append((topic, value))
            return len(sent)

    progress = _ReplayProgress(Producer(), every=100)  # type: ignore[arg-type]
    for i in range(250):
        assert await progress.send_and_wait("t", value=str(i).encode()) == i + 1
    assert len(sent) == 250 and sent[-1] == ("t", b"249")
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  100 record(s) put back …", "  200 record(s) put back …"]
