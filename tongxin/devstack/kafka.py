"""A real Apache Kafka broker (KRaft, single node) from jars fetched off Maven Central.

``deploy/kafka/pom.xml`` names the version; ``mvn dependency:copy-dependencies`` copies
the jars once into ``.cache/kafka/<version>/``. The broker runs as ``java -cp …
kafka.Kafka`` after ``kafka.tools.StorageTool format``.
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from tongxin.devstack.procs import port_open, spawn, stop_process, wait_until

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.yaml"
CACHE = ROOT / ".cache" / "kafka"


def kafka_version() -> str:
    """The Kafka version pinned in the pom."""
    m = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not m:
        raise RuntimeError(f"no <kafka.version> in {POM}")
    return m.group(1)


def java_available() -> bool:
    """True when a Java runtime is on PATH."""
    return shutil.which("java") is not None


def ensure_jars(verbose: bool = True) -> Path:
    """Fetch the Kafka jars once (idempotent); returns the directory holding them."""
    dest = CACHE / kafka_version()
    marker = dest / ".complete"
    if marker.exists():
        return dest
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed once to fetch the Kafka jars")
    if verbose:
        print(f"fetching Apache Kafka {kafka_version()} jars from Maven Central into {dest} …")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    marker.touch()
    if verbose:
        print(f"Kafka jars ready ({len(list(dest.glob('*.jar')))} jars)")
    return dest


class KafkaBroker:
    """One KRaft broker+controller on 127.0.0.1; data under ``data_dir`` (kept on restart)."""

    kind = "kafka"

    def __init__(self, data_dir: Path, port: int, controller_port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the broker's output goes."""
        return self.data_dir / "broker.log"

    def _config(self) -> Path:
        logs = self.data_dir / "logs"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self, jars: Path, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{jars}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> None:
        """Format storage (first time only), start the broker, wait until it answers."""
        jars = ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                self._java(
                    jars,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(config),
                ),
                check=True,
                capture_output=True,
            )
        self.proc = spawn(self._java(jars, "kafka.Kafka", str(config)), self.log_path)
        wait_until(lambda: port_open(self.port), timeout, "Apache Kafka", self.proc)

    def stop(self) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL if it hangs."""
        if self.proc is not None:
            stop_process(self.proc, timeout=30)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL (fault tests)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
