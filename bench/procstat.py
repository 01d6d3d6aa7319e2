"""CPU seconds and resident memory of processes, read from ``/proc`` (Linux; no psutil).

``/proc/<pid>/stat`` gives user and system CPU time in clock ticks (fields 14 and 15);
``/proc/<pid>/status`` gives ``VmRSS`` (now) and ``VmHWM`` (peak) in kB. Processes of an
already running platform are found by their listening port (``/proc/net/tcp*`` inode →
``/proc/<pid>/fd`` link).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process."""

    cpu_s: float
    rss_kib: int
    hwm_kib: int


def parse_stat_cpu(stat: str, ticks: int = CLK_TCK) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``.

    The command name (field 2) may contain spaces and parentheses, so fields are
    counted after its closing parenthesis.

    >>> line = "42 (python3 -m x) S 1 42 42 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 1 0"
    >>> parse_stat_cpu(line, ticks=100)
    3.0
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / ticks


def parse_status_kib(status: str, key: str) -> int:
    """A ``kB`` figure such as ``VmRSS`` from the text of ``/proc/<pid>/status`` (0 if absent).

    >>> parse_status_kib("Name:\\tx\\nVmHWM:\\t  81234 kB\\nVmRSS:\\t  80000 kB\\n", "VmHWM")
    81234
    """
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def sample(pid: int) -> ProcSample | None:
    """Read one process now; ``None`` when it is gone or unreadable."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    return ProcSample(
        cpu_s=parse_stat_cpu(stat),
        rss_kib=parse_status_kib(status, "VmRSS"),
        hwm_kib=parse_status_kib(status, "VmHWM"),
    )


@dataclass
class ProcWatch:
    """CPU used between :meth:`begin` and :meth:`end`, and the highest RSS seen."""

    name: str
    pid: int
    cpu_start: float | None = None
    cpu_end: float | None = None
    max_rss_kib: int = 0
    hwm_kib: int = 0
    alive: bool = True
    wall_start: float = 0.0
    wall_end: float = 0.0
    notes: list[str] = field(default_factory=list)

    def begin(self, now: float) -> None:
        """Start a measured interval."""
        s = sample(self.pid)
        self.cpu_start = s.cpu_s if s else None
        self.cpu_end = None
        self.wall_start = now
        self.max_rss_kib = s.rss_kib if s else 0
        self._take(s)

    def poll(self) -> None:
        """Take a reading (call about once a second)."""
        self._take(sample(self.pid))

    def end(self, now: float) -> None:
        """Close the interval."""
        s = sample(self.pid)
        self._take(s)
        self.cpu_end = s.cpu_s if s else self.cpu_end
        self.wall_end = now

    def _take(self, s: ProcSample | None) -> None:
        if s is None:
            self.alive = False
            return
        self.max_rss_kib = max(self.max_rss_kib, s.rss_kib)
        self.hwm_kib = max(self.hwm_kib, s.hwm_kib)
        self.cpu_end = s.cpu_s

    @property
    def cpu_s(self) -> float | None:
        """CPU seconds used in the interval."""
        if self.cpu_start is None or self.cpu_end is None:
            return None
        return self.cpu_end - self.cpu_start

    @property
    def cpu_share(self) -> float | None:
        """CPU seconds per wall second in the interval (1.0 = one core busy)."""
        wall = self.wall_end - self.wall_start
        cpu = self.cpu_s
        return None if cpu is None or wall <= 0 else cpu / wall

    def as_dict(self) -> dict[str, object]:
        """For the results file."""
        share = self.cpu_share
        return {
            "pid": self.pid,
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 2),
            "cpu_share": None if share is None else round(share, 3),
            "max_rss_mib": round(self.max_rss_kib / 1024, 1),
            "peak_rss_mib": round(self.hwm_kib / 1024, 1),
            "alive": self.alive,
        }


def _listen_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (IPv4 and IPv6)."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10:
                continue
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found.add(inode)
    return found


def pid_listening_on(port: int) -> int | None:
    """The process listening on a TCP port (e.g. a service of ``tongxin up``), if visible."""
    inodes = _listen_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(entry.name)
        except OSError:
            continue
    return None
