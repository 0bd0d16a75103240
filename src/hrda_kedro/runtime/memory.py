"""Host memory: keep freed tensor memory in the process instead of returning it to the OS."""

from __future__ import annotations

import ctypes
import functools
import logging
import platform

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache  # process-wide and idempotent: every stage's resolve_device asks again
def keep_freed_host_memory() -> bool:
    """Make glibc keep freed tensor memory for reuse instead of handing it back to the OS.

    By default glibc serves large blocks with a fresh ``mmap`` and trims the heap top on
    ``free``. A training step or a batched sliding-window pass allocates and frees tens of
    megabytes of tensors every call, so every call page-faults and zero-fills all of that
    memory again: 55 000 page faults per 0.3 s batched prediction on the project's CPU
    configuration (``benchmarks/inference.py``), which made batched windows slower than
    one by one.
    PyTorch's CPU tuning guide cures this by preloading jemalloc or tcmalloc; ``mallopt``
    does the same for glibc without a preload. Blocks above 32 MiB (glibc's ceiling) still
    use ``mmap``. The cost is memory: the resident set no longer shrinks between steps and
    fragmentation raises the high-water mark (default ``uda`` run: 1.9 GB instead of 1.5 GB,
    for 6 % less wall time). Returns whether it applied (glibc only).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    applied = bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    if not applied:
        logger.warning("glibc refused mallopt: freed host memory is returned to the OS as usual")
    return applied
