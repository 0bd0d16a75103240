"""The EMA teacher's pseudo-labels in a thread of their own, next to the source pass (CPU).

A self-training step's teacher pass (one LR crop and the HR sliding windows over the
target crop) needs only the teacher's weights and the target crop, not the student's
source pass; both start from the same state. On a GPU the two would queue on one stream,
but on a CPU they can run side by side, each on its share of torch's threads. Each then
runs fewer threads (one each on two cores), so fewer parallel regions whose threads meet
at a barrier: the cost that makes a two-thread step collapse when other processes take
the CPU (docs/performance.md). The teacher runs in eval mode and draws no random numbers,
so the step computes what it computes in sequence; only the thread counts, and with them
the summation order of some kernels, differ. The trainer uses it for a sliding-window
teacher only: a single-crop one would finish early and leave its thread idle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")


def thread_split(total: int) -> tuple[int, int]:
    """(the caller's, the teacher thread's) torch threads out of ``total``; the teacher's
    pass is the larger one (1 + 9 windows against the source pass's 2 crops, forward and
    backward), so it gets the odd thread."""
    teacher = (total + 1) // 2
    return total - teacher, teacher


@contextmanager
def beside(fn: Callable[[], T], enabled: bool) -> Iterator[Callable[[], T]]:
    """Start ``fn()`` next to the block when ``enabled`` (and torch has 2+ threads), else
    run it when its result is asked for; yields the function that returns that result.

    Inside the block the caller runs on its share of the threads (:func:`thread_split`);
    leaving it waits for ``fn`` and gives the caller all of them back, also on error.
    """
    total = torch.get_num_threads()
    if not enabled or total < 2:
        yield fn
        return
    own, teacher = thread_split(total)
    torch.set_num_threads(own)
    try:
        # torch.set_num_threads in the worker sizes that thread's OpenMP team only; leaving
        # the executor waits for fn, whose error (if any) its future raises.
        with ThreadPoolExecutor(
            1, "hrda-teacher", initializer=torch.set_num_threads, initargs=(teacher,)
        ) as pool:
            yield pool.submit(fn).result
    finally:
        torch.set_num_threads(total)
