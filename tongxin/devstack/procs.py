"""Small helpers for child server processes: free ports, waiting, clean stop, and the
supervisor of `tongxin up` that restarts a process that exits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tongxin.devstack.supervisor import RestartPolicy, RestartState


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes] | None
) -> None:
    """Poll ``check`` until true; fail early if ``proc`` died, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def spawn(
    cmd: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )


def tail_file(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file (none when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Supervised:
    """A process `tongxin up` keeps running: how to launch it (without waiting), whether it
    is ready, and the end of its log."""

    name: str
    launch: Callable[[], subprocess.Popen[bytes]]
    ready: Callable[[], bool]
    tail: Callable[[int], list[str]]
    proc: subprocess.Popen[bytes] | None = None
    state: RestartState = field(default_factory=RestartState)
    launched_at: float = 0.0
    restart_at: float | None = None
    is_ready: bool = False
    noted_at: float = 0.0


class CrashLoop(RuntimeError):
    """A process exited too often: restarting it would not help."""

    def __init__(self, child: Supervised, policy: RestartPolicy) -> None:
        self.name = child.name
        self.tail = child.tail(20)
        super().__init__(
            f"{child.name} exited {policy.loop_exits} times within {policy.loop_window:.0f} s "
            "(a crash loop); stopping the platform"
        )


class Supervisor:
    """Watches processes, restarts one that exits after its backoff (:class:`RestartState`),
    says so in one line, and counts the restarts; raises :class:`CrashLoop` when one keeps
    exiting. Call :meth:`step` every fraction of a second."""

    def __init__(
        self,
        children: list[Supervised],
        echo: Callable[[str], None],
        *,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        status_path: Path | None = None,
        still_waiting_every: float = 15.0,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.children = {c.name: c for c in children}
        for c in children:
            c.state = RestartState(self.policy)
            if c.proc is not None:  # already started and waited for
                c.is_ready = True
                c.state.started(clock())
        self.echo = echo
        self.clock = clock
        self.status_path = status_path
        self.still_waiting_every = still_waiting_every

    @property
    def restarts(self) -> dict[str, int]:
        """Restarts so far, per process."""
        return {name: c.state.restarts for name, c in self.children.items()}

    def procs(self, names: list[str]) -> dict[str, subprocess.Popen[bytes]]:
        """The running processes among ``names``."""
        return {n: p for n in names if (p := self.children[n].proc) is not None}

    def launch(self, names: list[str]) -> None:
        """Launch these (not yet running) processes; :meth:`step` reports them ready."""
        self.echo(f"waiting for {', '.join(names)} …")
        for name in names:
            self._launch(self.children[name])

    def _launch(self, c: Supervised) -> None:
        now = self.clock()
        c.proc = c.launch()
        c.launched_at = c.noted_at = now
        c.restart_at = None
        c.is_ready = False
        c.state.started(now)
        self._write_status()

    def ready(self, names: list[str] | None = None) -> bool:
        """True when all (or the named) processes are running and were ready once since
        their last start."""
        return all(self.children[n].is_ready for n in names or self.children)

    def step(self) -> None:
        """Notice exits, restart what is due, report readiness."""
        for c in self.children.values():
            now = self.clock()
            if c.restart_at is not None:
                if now >= c.restart_at:
                    self._launch(c)
                continue
            assert c.proc is not None, f"{c.name} was never launched"
            code = c.proc.poll()
            if code is not None:
                self._exited(c, code, now)
            elif not c.is_ready:
                self._check_ready(c, now)

    def _exited(self, c: Supervised, code: int, now: float) -> None:
        delay = c.state.exited(now)
        if delay is None:
            self.echo(f"{c.name} {describe_exit(code)}")
            raise CrashLoop(c, self.policy)
        c.restart_at = now + delay
        c.is_ready = False
        self.echo(
            f"{c.name} {describe_exit(code)}; restarting it in {delay:g} s "
            f"(restart {c.state.restarts}); the rest keep running"
        )
        self._write_status()

    def _check_ready(self, c: Supervised, now: float) -> None:
        if c.ready():
            c.is_ready = True
            again = f" again (restart {c.state.restarts})" if c.state.restarts else ""
            self.echo(f"{c.name} ready{again} in {now - c.launched_at:.1f} s")
        elif now - c.noted_at >= self.still_waiting_every:
            c.noted_at = now
            self.echo(f"still waiting for {c.name} ({now - c.launched_at:.0f} s)")

    def summary(self) -> str:
        """One line: the restarts per process."""
        counts = ", ".join(f"{n} {k}" for n, k in self.restarts.items())
        return f"restarts: {counts} (total {sum(self.restarts.values())})"

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        status = {
            name: {"restarts": c.state.restarts, "running": c.restart_at is None}
            for name, c in self.children.items()
        }
        with contextlib.suppress(OSError):
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"processes": status}, indent=2) + "\n")
            tmp.replace(self.status_path)
