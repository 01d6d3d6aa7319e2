"""What the benchmark runs against: its own stack and services, or a running ``tongxin up``.

Own (default): a :class:`LocalStack` (real Apache Kafka unless ``--broker`` says otherwise,
SecantusDB) on free ports in a temporary directory, then the four services as processes
with unique topic and database prefixes and their webhook pointed at our sink.

External (``--external``): the services of ``tongxin up`` at their default (or
``TONGXIN_<NAME>_PORT``) ports on 127.0.0.1, the broker of ``TONGXIN_KAFKA_BOOTSTRAP`` and
the database of ``TONGXIN_MONGODB_URI``. Only loopback addresses are accepted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.procstat import ProcWatch, pid_listening_on
from bench.sink import WebhookSink
from tongxin.cli import SERVICES, service_port, start_services, stop_services, wait_ready
from tongxin.devstack.procs import free_port, port_open
from tongxin.devstack.stack import LocalStack, StackConfig

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_MONGODB_URI = "mongodb://127.0.0.1:27017/?directConnection=true"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1")
    (True, True, True)
    >>> is_loopback("10.0.0.5"), is_loopback("kafka.example.org")
    (False, False)
    """
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bootstrap_hosts(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port`` pairs of a bootstrap list.

    >>> bootstrap_hosts("127.0.0.1:9092,localhost:9093")
    [('127.0.0.1', 9092), ('localhost', 9093)]
    """
    out: list[tuple[str, int]] = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        out.append((host or part.strip(), int(port or 9092)))
    return out


def mongo_hosts(uri: str) -> list[tuple[str, int]]:
    """Hosts of a ``mongodb://`` URI (no SRV lookups: those are never loopback).

    >>> mongo_hosts("mongodb://127.0.0.1:27017/?directConnection=true")
    [('127.0.0.1', 27017)]
    """
    if uri.startswith("mongodb+srv://"):
        raise ValueError("mongodb+srv URIs are not loopback")
    netloc = urlsplit(uri).netloc.rpartition("@")[2]
    out: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        out.append((host or part, int(port or 27017)))
    return out


def require_loopback(what: str, hosts: list[tuple[str, int]]) -> None:
    """Refuse anything that is not on this machine's loopback interface."""
    bad = [h for h, _ in hosts if not is_loopback(h)]
    if bad:
        raise SystemExit(f"bench: {what} must be on a loopback address, not {', '.join(bad)}")


@dataclass
class Target:
    """Where to send load, where to watch, and which processes to measure."""

    intake_url: str
    bootstrap: str
    mongodb_uri: str
    topic_prefix: str
    db_prefix: str
    run_id: str
    broker_kind: str
    idempotence: bool
    watches: dict[str, ProcWatch] = field(default_factory=dict)
    own: OwnPlatform | None = None

    def topic(self, name: str) -> str:
        """Physical name of a contract topic."""
        return self.topic_prefix + name


def external_target(env: dict[str, str], run_id: str) -> Target:
    """A running ``tongxin up`` (loopback only)."""
    bootstrap = env.get("TONGXIN_KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP
    uri = env.get("TONGXIN_MONGODB_URI") or DEFAULT_MONGODB_URI
    require_loopback("TONGXIN_KAFKA_BOOTSTRAP", bootstrap_hosts(bootstrap))
    require_loopback("TONGXIN_MONGODB_URI", mongo_hosts(uri))
    wanted = {
        "intake": ("127.0.0.1", service_port("intake", env)),
        "broker (TONGXIN_KAFKA_BOOTSTRAP)": bootstrap_hosts(bootstrap)[0],
        "database (TONGXIN_MONGODB_URI)": mongo_hosts(uri)[0],
    }
    closed = [f"{what} at {h}:{p}" for what, (h, p) in wanted.items() if not port_open(p, h)]
    if closed:
        raise SystemExit(
            f"bench --external: nothing listens for {', '.join(closed)}; is `tongxin up` running?"
        )
    target = Target(
        intake_url=f"http://127.0.0.1:{service_port('intake', env)}",
        bootstrap=bootstrap,
        mongodb_uri=uri,
        topic_prefix=env.get("TONGXIN_TOPIC_PREFIX", ""),
        db_prefix=env.get("TONGXIN_DB_PREFIX") or "tongxin_",
        run_id=run_id,
        broker_kind="external",
        idempotence=(env.get("TONGXIN_KAFKA_IDEMPOTENCE", "true").lower() != "false"),
    )
    named = {name: service_port(name, env) for name in SERVICES}
    named["kafka"] = bootstrap_hosts(bootstrap)[0][1]
    named["secantusdb"] = mongo_hosts(uri)[0][1]
    for name, port in named.items():
        pid = pid_listening_on(port)
        if pid is not None:
            target.watches[name] = ProcWatch(name, pid)
    return target


class OwnPlatform:
    """The benchmark's own stack and services; :meth:`stop` leaves nothing running."""

    def __init__(self, broker: str, run_id: str, extra_env: dict[str, str], keep: bool) -> None:
        self.run_id = run_id
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"tongxin-{run_id}-"))
        self.log_dir = self.data_dir / "logs"
        # the database's own settings (TONGXIN_DB_*) as `tongxin up` reads them; never an
        # external broker or database: the benchmark measures a stack it started itself
        config = StackConfig.from_env(self.data_dir, kafka_port=free_port(), mongo_port=free_port())
        self.stack = LocalStack(
            dataclasses.replace(config, broker=broker, external_kafka=None, external_mongo=None)
        )
        self.extra_env = extra_env
        self.keep = keep
        self.sink = WebhookSink()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self.failed = False

    async def start_stack(self) -> Target:
        """Broker and database (blocking starts run in a thread)."""
        print(f"starting the local stack in {self.data_dir} …", flush=True)
        await asyncio.to_thread(self.stack.start)
        kind = self.stack.broker_kind
        print(f"broker: {kind} at {self.stack.bootstrap}; database: {self.stack.mongodb_uri}")
        target = Target(
            intake_url="",
            bootstrap=self.stack.bootstrap,
            mongodb_uri=self.stack.mongodb_uri,
            topic_prefix=f"{self.run_id}.",
            db_prefix=f"{self.run_id}_",
            run_id=self.run_id,
            broker_kind=kind,
            idempotence=kind != "tansu",
            own=self,
        )
        if self.stack.broker is not None:
            proc = getattr(self.stack.broker, "proc", None)
            if proc is not None:
                target.watches[kind] = ProcWatch(kind, proc.pid)
        if self.stack.db is not None and self.stack.db.proc is not None:
            target.watches["secantusdb"] = ProcWatch("secantusdb", self.stack.db.proc.pid)
        return target

    async def start_services(self, target: Target, within: float = 120.0) -> None:
        """The four services as processes; fails fast if one exits while starting."""
        await self.sink.start()
        self.env = {
            **os.environ,
            **self.stack.service_env(),
            "TONGXIN_TOPIC_PREFIX": target.topic_prefix,
            "TONGXIN_DB_PREFIX": target.db_prefix,
            "TONGXIN_NOTIFY_WEBHOOK_URL": self.sink.url,
            "TONGXIN_INTAKE_ANONYMOUS_LIMIT": "false",  # on by default; the load is anonymous
            **{f"TONGXIN_{name.upper()}_PORT": str(free_port()) for name in SERVICES},
            **self.extra_env,
        }
        print(f"starting services (logs in {self.log_dir}) …", flush=True)
        self.procs = start_services(self.env, list(SERVICES), log_dir=self.log_dir)
        deadline = time.monotonic() + within
        pending = list(SERVICES)
        while pending:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                self.failed = True
                tails = "\n".join(
                    f"--- {n} (exit {c}):\n{self.log_tail(n)}" for n, c in dead.items()
                )
                raise RuntimeError(f"service(s) exited while starting: {dict(dead)}\n{tails}")
            if time.monotonic() > deadline:
                self.failed = True
                raise TimeoutError(f"services not ready after {within:.0f}s: {pending}")
            try:
                await asyncio.to_thread(wait_ready, self.env, pending, 2.0)
                pending = []
            except TimeoutError:
                pending = [n for n in pending if not self._ready(n)]
        target.intake_url = f"http://127.0.0.1:{self.env['TONGXIN_INTAKE_PORT']}"
        for name, p in self.procs.items():
            target.watches[name] = ProcWatch(name, p.pid)

    def _ready(self, name: str) -> bool:
        try:
            wait_ready(self.env, [name], 0.1)
        except TimeoutError:
            return False
        return True

    def dead_services(self) -> dict[str, int]:
        """Services that exited (code), while they should be running."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines a service printed."""
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_sizes(self) -> dict[str, int]:
        """Bytes each service logged (logging is work too)."""
        out: dict[str, int] = {}
        for name in self.procs:
            try:
                out[name] = (self.log_dir / f"{name}.log").stat().st_size
            except OSError:
                out[name] = 0
        return out

    async def stop(self) -> None:
        """Services (SIGTERM, drain), then broker and database, then the sink."""
        if self.procs:
            print("stopping services …", flush=True)
            await asyncio.to_thread(stop_services, self.procs)
        print("stopping broker and database …", flush=True)
        await asyncio.to_thread(self.stack.stop)
        await self.sink.stop()
        if self.keep or self.failed:
            print(f"kept {self.data_dir} (logs in {self.log_dir})", flush=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def new_run_id() -> str:
    """A short unique name for topics and databases of one run."""
    return f"bench{uuid.uuid4().hex[:8]}"
