"""The four services as real processes on a stack, isolated by topic and database prefix.

Shared by the end-to-end tests (one platform per module on the session stack) and the
fault scenarios (a platform on a stack of their own, restarted piece by piece).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import WebhookSink, unique
from tongxin.cli import SERVICES, start_services, stop_services, wait_ready
from tongxin.devstack.procs import free_port
from tongxin.devstack.stack import LocalStack


def platform_env(
    stack_env: dict[str, str], run: str, sink: WebhookSink, **extra: str
) -> dict[str, str]:
    """The services' environment: the stack, names prefixed by ``run``, free ports."""
    return {
        **os.environ,
        **stack_env,
        "TONGXIN_ENV": "test",
        "TONGXIN_TOPIC_PREFIX": f"{run}.",
        "TONGXIN_DB_PREFIX": f"{run}_",
        "TONGXIN_NOTIFY_WEBHOOK_URL": sink.url,
        "TONGXIN_OUTBOX_POLL_INTERVAL_S": "0.2",
        "TONGXIN_DLQ_WATCH_INTERVAL_S": "1",
        "TONGXIN_INTAKE_ANONYMOUS_LIMIT": "false",  # on by default; tests submit in bulk
        **{f"TONGXIN_{name.upper()}_PORT": str(free_port()) for name in SERVICES},
        **extra,
    }


@dataclass
class Platform:
    """Running services and how to reach them."""

    env: dict[str, str]
    sink: WebhookSink
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.env[f'TONGXIN_{name.upper()}_PORT']}"

    def topic(self, name: str) -> str:
        return self.env["TONGXIN_TOPIC_PREFIX"] + name

    def db(self, service: str) -> str:
        return self.env["TONGXIN_DB_PREFIX"] + service

    def start(self, *names: str) -> None:
        chosen = list(names) or list(SERVICES)
        self.procs.update(start_services(self.env, chosen, log_dir=self.log_dir))
        wait_ready(self.env, chosen, timeout=120)

    def kill(self, name: str) -> None:
        """SIGKILL one service."""
        p = self.procs.pop(name)
        p.kill()
        p.wait()

    def terminate(self, name: str, timeout: float = 40) -> int:
        """SIGTERM one service and wait for it to exit; its exit code."""
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout)

    def log(self, name: str) -> str:
        """Everything a service printed so far (JSON lines)."""
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_services(self.procs)
        self.procs.clear()


@contextmanager
def running_platform(stack: LocalStack, name: str, **extra: str) -> Iterator[Platform]:
    """The four services on ``stack`` under a fresh prefix (``name`` and a unique suffix),
    notify's webhook pointed at a sink of their own, ``extra`` added to their environment;
    all stopped afterwards, also when one fails to start."""
    sink = WebhookSink().start()
    run = unique(name)
    env = platform_env(stack.service_env(), run, sink, **extra)
    p = Platform(env, sink, Path(tempfile.mkdtemp(prefix=f"{run}-logs-")))
    try:
        p.start()
        yield p
    finally:
        p.stop()
        sink.stop()
