"""The local stack: a broker and a database, or the external ones named by env.

``TONGXIN_KAFKA_BOOTSTRAP`` / ``TONGXIN_MONGODB_URI`` set → use those, start nothing.
``TONGXIN_BROKER`` = ``kafka`` (require real Apache Kafka), ``tansu``, or ``auto``
(Kafka when Java is present, else tansu).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from tongxin.devstack.kafka import KafkaBroker, java_available
from tongxin.devstack.procs import Supervised, free_port, tail_file
from tongxin.devstack.servers import DB_CACHE_SIZE, DB_CHECKPOINT_S, SecantusServer, TansuBroker

BrokerKind = Literal["kafka", "tansu", "external"]


class Broker(Protocol):
    """A broker process the stack controls."""

    kind: str
    proc: subprocess.Popen[bytes] | None

    @property
    def bootstrap(self) -> str: ...

    @property
    def log_path(self) -> Path: ...

    def start(self, timeout: float = ...) -> None: ...

    def launch(self) -> subprocess.Popen[bytes]: ...

    def ready(self) -> bool: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...


@dataclass
class StackConfig:
    """Where and how to run the local stack (read once from env by :func:`from_env`)."""

    data_dir: Path
    broker: str = "auto"
    kafka_port: int = 9092
    mongo_port: int = 27017
    external_kafka: str | None = None
    external_mongo: str | None = None
    # seconds between the local database's checkpoints (SecantusServer)
    db_checkpoint_s: int = DB_CHECKPOINT_S
    db_cache_size: str = DB_CACHE_SIZE

    @classmethod
    def from_env(
        cls, data_dir: Path, *, kafka_port: int = 9092, mongo_port: int = 27017
    ) -> StackConfig:
        """Read ``TONGXIN_BROKER``, ``TONGXIN_KAFKA_BOOTSTRAP``, ``TONGXIN_MONGODB_URI``,
        ``TONGXIN_DB_CHECKPOINT_S``."""
        env = os.environ
        return cls(
            data_dir=data_dir,
            broker=env.get("TONGXIN_BROKER", "auto") or "auto",
            kafka_port=kafka_port,
            mongo_port=mongo_port,
            external_kafka=env.get("TONGXIN_KAFKA_BOOTSTRAP") or None,
            external_mongo=env.get("TONGXIN_MONGODB_URI") or None,
            db_checkpoint_s=int(env.get("TONGXIN_DB_CHECKPOINT_S") or DB_CHECKPOINT_S),
            db_cache_size=env.get("TONGXIN_DB_CACHE_SIZE") or DB_CACHE_SIZE,
        )


@dataclass
class LocalStack:
    """Start/stop the broker and database; exposes the env the services need."""

    config: StackConfig
    broker: Broker | None = None
    db: SecantusServer | None = None
    started: list[str] = field(default_factory=list)

    @property
    def broker_kind(self) -> BrokerKind:
        """Which broker the services talk to."""
        if self.config.external_kafka:
            return "external"
        return "kafka" if isinstance(self.broker, KafkaBroker) else "tansu"

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers."""
        if self.config.external_kafka:
            return self.config.external_kafka
        assert self.broker is not None
        return self.broker.bootstrap

    @property
    def mongodb_uri(self) -> str:
        """Database connection string."""
        if self.config.external_mongo:
            return self.config.external_mongo
        assert self.db is not None
        return self.db.uri

    def service_env(self) -> dict[str, str]:
        """``TONGXIN_*`` variables pointing a service at this stack."""
        return {
            "TONGXIN_KAFKA_BOOTSTRAP": self.bootstrap,
            "TONGXIN_MONGODB_URI": self.mongodb_uri,
            "TONGXIN_KAFKA_IDEMPOTENCE": "false" if self.broker_kind == "tansu" else "true",
        }

    def _choose_broker(self) -> Broker:
        kind = self.config.broker
        data = self.config.data_dir / "broker"
        if kind == "kafka" or (kind == "auto" and java_available()):
            if not java_available():
                raise RuntimeError("TONGXIN_BROKER=kafka but no Java runtime is on PATH")
            return KafkaBroker(data, self.config.kafka_port, free_port())
        if kind in ("tansu", "auto"):
            return TansuBroker(data, self.config.kafka_port)
        raise ValueError(f"TONGXIN_BROKER must be kafka, tansu or auto, not {kind!r}")

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start whatever is not external; ``progress`` hears what is awaited and how long
        it took."""
        say = progress or (lambda _line: None)
        try:
            if not self.config.external_mongo:
                self.db = SecantusServer(
                    self.config.data_dir / "db",
                    self.config.mongo_port,
                    checkpoint_s=self.config.db_checkpoint_s,
                    cache_size=self.config.db_cache_size,
                )
                say(f"waiting for the database (SecantusDB on port {self.config.mongo_port}) …")
                began = time.monotonic()
                self.db.start()
                say(f"database ready in {time.monotonic() - began:.1f} s")
                self.started.append("db")
            if not self.config.external_kafka:
                self.broker = self._choose_broker()
                name = "Apache Kafka" if self.broker.kind == "kafka" else "tansu"
                say(f"waiting for the broker ({name} on port {self.config.kafka_port}) …")
                began = time.monotonic()
                self.broker.start()
                say(f"broker ready in {time.monotonic() - began:.1f} s")
                self.started.append("broker")
        except BaseException:
            self.stop()
            raise

    def supervised(self) -> list[Supervised]:
        """The started database and broker, for the supervisor of `tongxin up` (a restart
        keeps their data and ports)."""
        out: list[Supervised] = []
        if self.db is not None:
            db = self.db
            db_tail = lambda n: tail_file(db.log_path, n)  # noqa: E731
            out.append(Supervised("database", db.launch, db.ready, db_tail, proc=db.proc))
        if self.broker is not None:
            broker = self.broker
            broker_tail = lambda n: tail_file(broker.log_path, n)  # noqa: E731
            out.append(
                Supervised("broker", broker.launch, broker.ready, broker_tail, proc=broker.proc)
            )
        return out

    def stop(self) -> None:
        """Stop in reverse order."""
        if self.broker is not None:
            self.broker.stop()
        if self.db is not None:
            self.db.stop()
