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
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    """Fetch the Kafka jars once (idempotent); returns the directory holding them. With
    ``verbose``, a line per jar Maven downloads (name and size)."""
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
    cmd = [
        "mvn",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    tail: deque[str] = deque(maxlen=40)
    fetched = 0
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as mvn:
        assert mvn.stdout is not None
        for line in mvn.stdout:
            tail.append(line.rstrip())
            jar = downloaded_jar(line)
            if verbose and jar is not None:
                fetched += 1
                print(f"  [{fetched}] {jar}", flush=True)
    if mvn.returncode != 0:
        raise RuntimeError("fetching the Kafka jars failed; Maven said:\n" + "\n".join(tail))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    marker.touch()
    if verbose:
        jars = len(list(dest.glob("*.jar")))
        print(f"Kafka jars ready ({jars} jars; {fetched} downloaded, the rest from ~/.m2)")
    return dest


_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (\S+) \(([^)]*?)(?: at [^)]*)?\)")


def downloaded_jar(line: str) -> str | None:
    """``kafka-clients-4.1.1.jar (12 MB)`` for Maven's line about a downloaded jar, else
    ``None``."""
    m = _DOWNLOADED.search(line)
    if m is None or not m.group(1).endswith(".jar"):
        return None
    return f"{m.group(1).rsplit('/', 1)[-1]} ({m.group(2)})"


BROKER_USER = "tongxin-broker"  # the SCRAM user the broker authenticates to itself as


@dataclass(frozen=True)
class BrokerSecurity:
    """SCRAM ``users`` (name → password) on a SASL_PLAINTEXT listener; SASL_SSL too when
    ``tls_port``, ``tls_certfile`` (the broker's PEM certificate chain) and ``tls_keyfile``
    (its unencrypted PKCS#8 PEM key) are given."""

    users: dict[str, str]
    mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    tls_port: int | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    broker_password: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)

    def __post_init__(self) -> None:
        tls = (self.tls_port, self.tls_certfile, self.tls_keyfile)
        if any(v is not None for v in tls) and not all(v is not None for v in tls):
            raise ValueError("SASL_SSL needs tls_port, tls_certfile and tls_keyfile")

    def scram_args(self) -> list[str]:
        """``--add-scram`` arguments of ``kafka-storage format`` for every user."""
        out: list[str] = []
        for name, password in {**self.users, BROKER_USER: self.broker_password}.items():
            if not re.fullmatch(r"[\w.-]+", name) or any(c in password for c in ',]"='):
                raise ValueError(f"SCRAM user {name!r}: unsupported characters")
            out += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return out

    def listeners(self, port: int) -> dict[str, str]:
        """Listener name (= its protocol) → ``host:port``."""
        out = {"SASL_PLAINTEXT": f"127.0.0.1:{port}"}
        if self.tls_port is not None:
            out["SASL_SSL"] = f"127.0.0.1:{self.tls_port}"
        return out

    def properties(self) -> dict[str, str]:
        """SASL (and TLS) broker properties of the secured listeners."""
        mech = self.mechanism.lower()
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{self.broker_password}";'
        )
        props: dict[str, str] = {
            "sasl.enabled.mechanisms": self.mechanism,
            "sasl.mechanism.inter.broker.protocol": self.mechanism,
        }
        for name in self.listeners(0):
            props[f"listener.name.{name.lower()}.{mech}.sasl.jaas.config"] = jaas
        if self.tls_certfile and self.tls_keyfile:
            props |= {
                "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
                "listener.name.sasl_ssl.ssl.keystore.certificate.chain": _pem_value(
                    self.tls_certfile
                ),
                "listener.name.sasl_ssl.ssl.keystore.key": _pem_value(self.tls_keyfile),
            }
        return props


def _pem_value(path: Path) -> str:
    """A PEM file as a one-line properties value (newlines escaped)."""
    return path.read_text().strip().replace("\n", "\\n")


class KafkaBroker:
    """One KRaft broker+controller on 127.0.0.1; data under ``data_dir`` (kept on restart).

    With ``security`` the client listener needs SCRAM credentials (and TLS, if given).
    """

    kind = "kafka"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        *,
        security: BrokerSecurity | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.security = security
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def tls_bootstrap(self) -> str | None:
        """``host:port`` of the SASL_SSL listener, when there is one."""
        if self.security is None or self.security.tls_port is None:
            return None
        return f"127.0.0.1:{self.security.tls_port}"

    @property
    def log_path(self) -> Path:
        """Where the broker's output goes."""
        return self.data_dir / "broker.log"

    def _config(self) -> Path:
        logs = self.data_dir / "logs"
        # a TLS certificate must name 127.0.0.1 (an IP subjectAltName)
        client = (
            self.security.listeners(self.port)
            if self.security
            else {"PLAINTEXT": f"127.0.0.1:{self.port}"}
        )
        inter = "SASL_PLAINTEXT" if self.security else "PLAINTEXT"
        advertised = ",".join(f"{name}://{addr}" for name, addr in client.items())
        protocols = ",".join(f"{name}:{name}" for name in client)
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"{advertised},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": inter,
            "listener.security.protocol.map": f"{protocols},CONTROLLER:PLAINTEXT",
            "log.dirs": str(logs),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            # a broker restarted after a SIGKILL serves only once the controller has let its
            # previous registration's session lapse (9 s by default; broker and controller
            # are one process here, so a lapse is a restart, not a slow network): 3 s, so
            # `tongxin up` has a killed broker back in ~11 s, not ~17 s (docs/operations.md)
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "1000",
            "auto.create.topics.enable": "false",
            **(self.security.properties() if self.security else {}),
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
        proc = self.launch()
        wait_until(self.ready, timeout, "Apache Kafka", proc)

    def ready(self) -> bool:
        """Every client listener accepts connections."""
        ports = [self.port]
        if self.security is not None and self.security.tls_port is not None:
            ports.append(self.security.tls_port)
        return all(port_open(p) for p in ports)

    def launch(self) -> subprocess.Popen[bytes]:
        """Format storage (first time only) and start the broker without waiting for it."""
        jars = ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = new_cluster_id()
            subprocess.run(
                self._java(
                    jars,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(config),
                    *(self.security.scram_args() if self.security else []),
                ),
                check=True,
                capture_output=True,
            )
        self.proc = spawn(self._java(jars, "kafka.Kafka", str(config)), self.log_path)
        return self.proc

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


def new_cluster_id() -> str:
    """A KRaft cluster id (base64url of a UUID). StorageTool reads an id that starts with
    ``-`` as an option and refuses to format (about one start in 64), so those are redrawn."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
