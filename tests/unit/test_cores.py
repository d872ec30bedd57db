"""The model's threads follow the cores other processes leave free (rag.machine): the kernel's counters read
right, a lasting load counted and a burst not, and for real: a busy process beside this one takes a core."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from rag.machine import CoreWatch

STAT = """cpu  300 0 100 900 50 0 0 0 0 0
cpu0 100 0 50 400 25 0 0 0 0 0
cpu1 200 0 50 500 25 0 0 0 0 0
cpu2 999 0 0 0 0 0 0 0 0 0
intr 12345
"""


def watch_of(tmp_path, cpus: list[int], text: str = STAT) -> CoreWatch:
    stat = tmp_path / "stat"
    stat.write_text(text)
    watch = CoreWatch(stat=stat)
    watch.cpus = cpus
    return watch


def test_busy_time_is_read_for_this_process_cpus_only(tmp_path):
    watch = watch_of(tmp_path, [0, 1])
    # user + system of cpu0 and cpu1 (idle and iowait left out), in clock ticks
    assert watch._busy_seconds() == pytest.approx((150 + 250) / os.sysconf("SC_CLK_TCK"))
    assert watch_of(tmp_path, [2])._busy_seconds() == pytest.approx(999 / os.sysconf("SC_CLK_TCK"))


def test_a_lasting_load_takes_a_core_and_a_burst_does_not(tmp_path):
    watch = watch_of(tmp_path, [0, 1])
    assert watch.threads(2) == 2  # nothing sampled yet
    watch._samples.extend([1.0, 0.95, 1.0, 0.9])  # one core busy for a while
    assert watch.threads(2) == 1
    watch._samples.extend([1.0, 1.8, 2.0, 0.05])  # a burst, then quiet: the least of the window counts
    assert watch.threads(2) == 2
    watch._samples.extend([0.2] * 8)  # background noise leaves the cores to the model
    assert watch.threads(2) == 2
    watch._samples.extend([2.0] * 8)  # every core busy: still one thread
    assert watch.threads(2) == 1
    assert watch.threads(1) == 1


def test_without_the_kernel_counters_nothing_changes(tmp_path):
    watch = CoreWatch(stat=tmp_path / "absent")
    assert not watch.start() and watch.threads(2) == 2


@pytest.mark.skipif(len(os.sched_getaffinity(0)) != 2, reason="measured for two cores")
def test_a_busy_process_beside_this_one_takes_one_of_two_cores():
    watch = CoreWatch(every_s=0.1, window=5)
    assert watch.start()
    time.sleep(0.8)
    quiet = watch.threads(2)
    if quiet != 2:
        pytest.skip(f"the machine is busy already (others keep {watch.others_busy():.2f} cores): nothing to compare")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 5
        while watch.threads(2) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        busy = watch.threads(2), watch.others_busy()
    finally:
        hog.kill()
        hog.wait()
    deadline = time.monotonic() + 5
    while watch.threads(2) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert busy[0] == 1, f"others kept {busy[1]:.2f} cores busy"
    assert watch.threads(2) == 2, "the core was not given back once the process ended"
