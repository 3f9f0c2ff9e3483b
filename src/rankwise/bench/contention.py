"""How much of the machine other work used while a timing ran: the cores kept busy by processes outside this
one and its children. A load average cannot tell: a 2-thread run on 2 cores alone raises it above 2."""

from __future__ import annotations

import time
from dataclasses import dataclass

SHARED_CORES = 0.2  # other processes busier than this (cores, on average) inflate a timing noticeably


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far: this process tree's, and the whole machine's busy time; wall clock beside them."""

    own: float
    machine: float
    wall: float


def snapshot() -> CpuSnapshot | None:
    """The CPU seconds used so far, or None where psutil is not installed or the system hides the figures."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        me = psutil.Process()
        own = sum(_busy_seconds(p) for p in [me, *me.children(recursive=True)])
        total = psutil.cpu_times()
        # not busy: idle and waiting on I/O; counted twice on Linux: guest time (inside user and nice)
        skip = sum(getattr(total, name, 0.0) for name in ("idle", "iowait", "guest", "guest_nice"))
        return CpuSnapshot(own=own, machine=sum(total) - skip, wall=time.monotonic())
    except (psutil.Error, OSError):
        return None


def other_cores(start: CpuSnapshot | None, end: CpuSnapshot | None) -> float | None:
    """The cores other processes kept busy between two snapshots, on average (None where either is missing)."""
    if start is None or end is None or end.wall <= start.wall:
        return None
    others = (end.machine - start.machine) - (end.own - start.own)
    return max(others, 0.0) / (end.wall - start.wall)


def _busy_seconds(process) -> float:
    """A process's user plus system CPU seconds (0 for one that ended meanwhile)."""
    import psutil
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system
