"""Process-wide settings for the command-line tool (not applied when sslkit is imported as a library).

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
