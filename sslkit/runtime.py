"""Process-wide settings for the command-line tool (not applied when sslkit is imported as a library):
memory reuse, the OpenMP wait policy and thread count, and what the machine is (CPU, flags, load).

A training step allocates and frees the same few megabyte-sized tensors every step. glibc's malloc
serves blocks of that size with `mmap` or returns them to the kernel when the heap top is freed, so
a step can pay a page fault per 4 KiB to get them back: up to ~300 faults per step at the
MovieLens-sized benchmark shape, 3-6% of its time. How many depends on what the process freed
before (glibc raises its thresholds after large frees), so the gain ranges from that to nothing.
`keep_freed_memory` tells malloc to keep such blocks for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import time
from dataclasses import dataclass

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit; bigger blocks still use mmap
TRIM_THRESHOLD = 256 << 20  # free memory at the heap top kept before returning it to the kernel


def keep_freed_memory() -> bool:
    """Keep freed blocks up to 32 MiB in the process for reuse (glibc only; elsewhere a no-op).

    Returns:
        True when both settings were applied.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl without mallopt, Windows)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


# ---------------------------------------------------------------------------------------------------
# Threads. torch's CPU kernels run on an OpenMP pool (GNU libgomp in the PyPI wheels). By default a
# worker that finishes its share spins for a while before it sleeps; when another process holds the
# other core, the spinning thread and the one it waits for take turns on one core and a small step
# can run 30x slower than on one thread. A passive wait policy makes idle workers sleep at once.
# libgomp reads OMP_WAIT_POLICY once, when torch loads it, so `passive_wait_policy` must run first.

WAIT_POLICY = "PASSIVE"

# Below this many matmul FLOPs per training step a second thread does not pay for waking it: the
# step is many small kernels whose parallel regions cost more than they save (docs/scaling.md,
# "Threads", measured on the MovieLens-100K and Wikipedia benchmark shapes).
SMALL_STEP_FLOPS = 2e9


def passive_wait_policy() -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it; return the policy in effect.

    Has an effect only before torch is imported (the `sslkit` command calls it first thing).
    """
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
    return os.environ.get("OMP_WAIT_POLICY", "library default")


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where the OS has no such call)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cpu_times() -> dict[int, tuple[int, int]] | None:
    """Per-CPU (idle, total) jiffies from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in values]
            out[int(name[3:])] = (v[3] + (v[4] if len(v) > 4 else 0), sum(v[:8]))  # idle + iowait; no guest
    return out


def cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 `cpu.max`, e.g. a container's `--cpus 2`);
    None without a limit or where it cannot be read."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else max(int(quota) / int(period), 0.01)
    except (OSError, ValueError):
        return None


def free_cpus(cpus: list[int], seconds: float = 0.25) -> float | None:
    """How many of `cpus` other processes left idle over a short sample (0.25 s of /proc/stat).

    None where /proc/stat is not available (not Linux).
    """
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(seconds)
    after = _cpu_times() or {}
    free = 0.0
    for c in cpus:
        if c in before and c in after and after[c][1] > before[c][1]:
            free += (after[c][0] - before[c][0]) / (after[c][1] - before[c][1])
    return free


@dataclass(frozen=True)
class Threads:
    """The thread count a run uses and why (printed at start, recorded in run.json)."""

    threads: int
    reason: str
    usable_cpus: int
    free_cpus: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"threads": self.threads, "reason": self.reason, "usable_cpus": self.usable_cpus,
                "free_cpus": None if self.free_cpus is None else round(self.free_cpus, 2),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "library default")}


def choose_threads(requested: int | None, step_flops: float | None = None) -> Threads:
    """Threads for a training run: `requested` (train.threads / --threads) wins, then OMP_NUM_THREADS;
    otherwise one thread for a small step (`SMALL_STEP_FLOPS`), else the usable CPUs (the affinity
    mask, capped by a cgroup CPU quota) that other processes leave idle (at least one).
    """
    cpus = usable_cpus()
    quota = cpu_quota()
    if quota is not None and quota < len(cpus):  # a container limited to fewer CPUs than it sees
        cpus = cpus[:max(1, int(quota))]
    if requested:
        return Threads(requested, "train.threads", len(cpus))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return Threads(int(env), "OMP_NUM_THREADS", len(cpus))
    if len(cpus) == 1:
        return Threads(1, "one usable CPU", 1)
    if step_flops is not None and step_flops < SMALL_STEP_FLOPS:
        return Threads(1, f"small model ({step_flops / 1e9:.2g} GFLOP per step)", len(cpus))
    free = free_cpus(cpus)
    if free is None:
        return Threads(len(cpus), "usable CPUs", len(cpus))
    n = max(1, min(len(cpus), int(free + 0.5)))
    return Threads(n, f"{free:.1f} of {len(cpus)} usable CPUs idle", len(cpus), free)


# ---------------------------------------------------------------------------------------------------
# The machine, as benchmarks and run.json record it.

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(CPU model name, CPU flags) from /proc/cpuinfo; ("unknown", {}) where it cannot be read."""
    model, flags = "unknown", frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        import platform

        model = platform.processor() or "unknown"
    return model, flags


def machine() -> dict[str, object]:
    """The CPU model, its bf16 flags, usable CPUs and load average: what every benchmark JSON records."""
    model, flags = cpu_info()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": model, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "avx512f": "avx512f" in flags, "avx2": "avx2" in flags, "cpus": os.cpu_count(),
            "usable_cpus": len(usable_cpus()), "loadavg": load}
