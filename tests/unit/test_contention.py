"""How many cores other processes kept busy while a timing ran."""

import time

from rankwise.bench.contention import CpuSnapshot, other_cores, snapshot


def test_other_cores_is_the_machine_busy_time_not_ours_over_the_wall_time() -> None:
    start, end = CpuSnapshot(own=1.0, machine=2.0, wall=10.0), CpuSnapshot(own=3.0, machine=7.0, wall=12.0)
    assert other_cores(start, end) == 1.5  # (5 - 2) CPU seconds of others in 2 s
    assert other_cores(start, CpuSnapshot(own=4.0, machine=4.0, wall=12.0)) == 0.0  # never negative
    assert other_cores(None, end) is None and other_cores(start, None) is None
    assert other_cores(end, end) is None  # no wall time passed


def test_a_snapshot_counts_this_process_cpu_time_as_its_own() -> None:
    before = snapshot()
    assert before is not None  # psutil is installed with the dev extra
    spent = time.process_time()
    while time.process_time() - spent < 0.3:  # 0.3 CPU seconds of our own work
        pass
    after = snapshot()
    assert after.own - before.own >= 0.25 and after.machine - before.machine >= 0.25
