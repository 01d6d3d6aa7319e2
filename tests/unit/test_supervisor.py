"""The supervisor of `tongxin up`: backoff and crash-loop decisions, and the loop around them
(with stand-in processes: what is checked is when it restarts and what it says)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tongxin.devstack.procs import CrashLoop, Supervised, Supervisor, describe_exit
from tongxin.devstack.supervisor import RestartPolicy, RestartState


def test_the_delay_doubles_from_one_second_up_to_the_cap() -> None:
    s = RestartState(RestartPolicy(initial=1, cap=30, loop_exits=100, stable_after=60))
    delays = []
    now = 0.0
    for _ in range(8):
        s.started(now)
        now += 5  # up 5 s each time: not stable, not a loop at 100 exits
        delays.append(s.exited(now))
        now += delays[-1] or 0
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert s.restarts == 8


def test_a_process_that_stayed_up_starts_again_at_the_initial_delay() -> None:
    s = RestartState(RestartPolicy(initial=1, cap=30, stable_after=60))
    s.started(0)
    assert s.exited(1) == 1
    s.started(2)
    assert s.exited(3) == 2
    s.started(5)
    assert s.exited(5 + 59.9) == 4  # just short of stable
    s.started(70)
    assert s.exited(70 + 60) == 1  # stayed up 60 s: afresh
    s.started(131)
    assert s.exited(132) == 2


def test_five_exits_within_a_minute_are_a_crash_loop() -> None:
    s = RestartState(RestartPolicy(loop_exits=5, loop_window=60, cap=1))
    results = []
    for t in (0, 10, 20, 30, 40):
        s.started(t)
        results.append(s.exited(t + 1))
    assert results[:4] == [1, 1, 1, 1]
    assert results[4] is None  # the fifth within 60 s
    assert s.restarts == 4


def test_exits_spread_over_more_than_the_window_are_not_a_loop() -> None:
    s = RestartState(RestartPolicy(loop_exits=5, loop_window=60, cap=1))
    for t in range(0, 600, 20):  # every 20 s for 10 minutes: 3 in any minute
        s.started(t)
        assert s.exited(t + 1) is not None


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"


class FakeProc:
    """A stand-in child: exits when told to."""

    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _child(name: str, launched: list[FakeProc], ready: list[bool]) -> Supervised:
    def launch() -> Any:
        launched.append(FakeProc())
        return launched[-1]

    return Supervised(
        name, launch, lambda: ready[0], lambda n: [f"{name} line {i}" for i in range(n)]
    )


def test_the_loop_restarts_one_after_its_backoff_and_leaves_the_others(tmp_path: Path) -> None:
    clock, lines = Clock(), []
    a_procs: list[FakeProc] = []
    b_procs: list[FakeProc] = []
    ready = [False]
    status = tmp_path / "supervisor.json"
    sup = Supervisor(
        [_child("routing", a_procs, ready), _child("intake", b_procs, ready)],
        lines.append,
        clock=clock,
        status_path=status,
    )
    sup.launch(["routing", "intake"])
    sup.step()
    assert not sup.ready()
    ready[0] = True
    clock.now += 2.5
    sup.step()
    assert sup.ready()
    assert "routing ready in 2.5 s" in lines

    a_procs[-1].returncode = -signal.SIGKILL
    sup.step()
    assert lines[-1].startswith("routing killed by SIGKILL; restarting it in 1 s (restart 1)")
    assert len(a_procs) == 1 and not sup.ready(["routing"]) and sup.ready(["intake"])
    clock.now += 0.5
    sup.step()
    assert len(a_procs) == 1  # not yet
    clock.now += 0.6
    sup.step()
    assert len(a_procs) == 2 and len(b_procs) == 1  # restarted; intake untouched
    clock.now += 3
    sup.step()
    assert lines[-1] == "routing ready again (restart 1) in 3.0 s"
    assert sup.restarts == {"routing": 1, "intake": 0}
    assert "routing 1, intake 0 (total 1)" in sup.summary()
    assert json.loads(status.read_text())["processes"]["routing"]["restarts"] == 1


def test_the_loop_stops_on_a_crash_loop_naming_the_process_and_its_log() -> None:
    clock, lines = Clock(), []
    procs: list[FakeProc] = []
    sup = Supervisor([_child("notify", procs, [True])], lines.append, clock=clock)
    sup.launch(["notify"])
    with pytest.raises(CrashLoop) as err:
        for _ in range(20):
            procs[-1].returncode = 1
            sup.step()
            clock.now += 5
            sup.step()
    assert len(procs) == 5  # the first start and four restarts; the fifth exit gives up
    assert err.value.name == "notify"
    assert "notify exited 5 times within 60 s" in str(err.value)
    assert err.value.tail == [f"notify line {i}" for i in range(20)]


def test_a_real_process_killed_is_restarted(tmp_path: Path) -> None:
    """The loop with real child processes: SIGKILL one, it comes back, the other stays."""
    clock = Clock()

    def sleeper() -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sleep", "30"], start_new_session=True)

    children = [Supervised(n, sleeper, lambda: True, lambda n: []) for n in ("broker", "database")]
    sup = Supervisor(children, lambda _l: None, clock=clock)
    sup.launch(["broker", "database"])
    first, other = sup.children["broker"].proc, sup.children["database"].proc
    assert first is not None and other is not None
    try:
        first.kill()
        first.wait()
        sup.step()
        clock.now += 1
        sup.step()
        again = sup.children["broker"].proc
        assert again is not None and again.pid != first.pid and again.poll() is None
        assert sup.children["database"].proc is other and other.poll() is None
    finally:
        for p in sup.procs(["broker", "database"]).values():
            p.kill()
            p.wait()
