"""What this machine offers, read from the kernel: the cores this process may use, the memory it can still
take, the CPU's features, whether an NVIDIA GPU is there, and how busy other processes keep the cores.

One module for every probe of the machine, so that a container, another OS or a test has one place to look.

``CoreWatch`` tells how many threads llama.cpp should use now: as many cores as other processes leave free.

llama.cpp's threads wait for each other at every step of a forward pass (hundreds of times a token). When
another process keeps a core busy (an ingest reading an upload, a second program), one of the model's
threads is descheduled at each of those waits for a whole time slice of the kernel's: measured on 2 cores
with SmolLM2, an answer of 0.9 s took 57-73 s beside one busy process with 2 threads, 1.9 s with 1 thread
(docs/measurements.md, "The model beside a busy core"). So before each request, and every few tokens while
it runs, the model takes ``cores - busy`` threads, never more than configured.

It samples the kernel's per-CPU counters (``/proc/stat``, the CPUs this process may run on) in a
background thread every ``every_s``, minus this process's own CPU time: what *other* processes took. It takes
the least of the last ``window`` samples, so a load that lasts counts and a burst (the reranker of the
question just asked, in the parent) does not. Where ``/proc/stat`` cannot be read (not Linux), nothing
changes.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from functools import cache
from pathlib import Path


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory this process can still take: the kernel's MemAvailable, or less under a cgroup v2
    limit (containers); None where neither can be read."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def cuda_present() -> bool:
    """Whether an NVIDIA GPU's driver is loaded, told without importing torch (1.7 s)."""
    return Path("/proc/driver/nvidia/version").exists()


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def bf16_in_hardware() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX), where bfloat16 pays."""
    return "amx_bf16" in cpu_flags()


PROC_STAT = Path("/proc/stat")
NOISE_CORES = 0.25  # others' use below this much of a core leaves the core to the model


class CoreWatch:
    """Other processes' use of this process's CPUs, in cores, sampled in the background."""

    def __init__(self, every_s: float = 0.25, window: int = 8, stat: Path = PROC_STAT) -> None:
        self.every_s, self.stat = every_s, stat
        self.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self._samples: deque[float] = deque(maxlen=window)
        self._started = False
        self._guard = threading.Lock()
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _busy_seconds(self) -> float | None:
        """CPU seconds spent busy on this process's CPUs since boot, or None where it cannot be read."""
        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        wanted = {f"cpu{n}" for n in self.cpus}
        busy = 0
        for line in lines:
            fields = line.split()
            if fields and fields[0] in wanted:
                values = [int(v) for v in fields[1:]]
                busy += sum(values[:8]) - values[3] - values[4]  # all but idle and iowait (guest is in user)
        return busy / self._tick

    def _run(self) -> None:
        last = (time.monotonic(), self._busy_seconds(), time.process_time())
        while True:
            time.sleep(self.every_s)
            now = (time.monotonic(), self._busy_seconds(), time.process_time())
            if now[1] is None or last[1] is None:
                return
            others = (now[1] - last[1]) - (now[2] - last[2])
            self._samples.append(max(0.0, others / max(now[0] - last[0], 1e-6)))
            last = now

    def start(self) -> bool:
        """Starts sampling (once); False where the counters cannot be read."""
        with self._guard:
            if not self._started:
                if not self.cpus or self._busy_seconds() is None:
                    return False
                threading.Thread(target=self._run, name="core-watch", daemon=True).start()
                self._started = True
        return True

    def others_busy(self) -> float:
        """Cores that other processes kept busy through the last samples (the least of them); 0 before any."""
        samples = list(self._samples)
        return min(samples) if samples else 0.0

    def threads(self, wanted: int) -> int:
        """Threads for the model now: the cores others leave free, at least one, at most ``wanted``."""
        if not self.cpus:
            return wanted
        free = int(len(self.cpus) - self.others_busy() + NOISE_CORES)
        return max(1, min(wanted, free))
