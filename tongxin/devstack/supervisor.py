"""When to restart a process of `tongxin up`, and when to give up: a pure state machine.

A process that exits is restarted after a delay that starts at ``initial`` seconds and
doubles with each exit up to ``cap``; once a process has stayed up ``stable_after``
seconds, its next exit starts again at ``initial``. ``loop_exits`` exits within
``loop_window`` seconds are a crash loop: restarting would not help, the platform stops.
The process handling around it is :class:`tongxin.devstack.procs.Supervisor`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff and crash-loop limits (seconds)."""

    initial: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0
    loop_exits: int = 5
    loop_window: float = 60.0


@dataclass
class RestartState:
    """One process's exits: :meth:`exited` says how long to wait before the restart, or
    ``None`` for a crash loop."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    started_at: float | None = None
    restarts: int = 0
    _delay: float | None = None
    _exits: deque[float] = field(default_factory=deque)

    def started(self, now: float) -> None:
        """The process was (re)started at ``now``."""
        self.started_at = now

    def exited(self, now: float) -> float | None:
        """The process exited at ``now``: seconds until its restart, or ``None`` (give up)."""
        p = self.policy
        if self._delay is None or (
            self.started_at is not None and now - self.started_at >= p.stable_after
        ):
            self._delay = p.initial  # first exit, or it had stayed up: start afresh
        self.started_at = None
        self._exits.append(now)
        while self._exits and now - self._exits[0] > p.loop_window:
            self._exits.popleft()
        if len(self._exits) >= p.loop_exits:
            return None
        delay = self._delay
        self._delay = min(p.cap, delay * 2)
        self.restarts += 1
        return delay
