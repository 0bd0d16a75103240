"""The EMA teacher's pseudo-labels in a thread of their own, next to the source pass (CPU).

A self-training step's teacher pass (one LR crop and the HR sliding windows over the
target crop) needs only the teacher's weights and the target crop, not the student's
source pass; both start from the same state. On a GPU the two would queue on one stream,
but on a CPU they can run side by side, each on its share of torch's threads. Each then
runs fewer threads (one each on two cores), so fewer parallel regions whose threads meet
at a barrier: the cost that makes a two-thread step collapse when other processes take
the CPU (README, Performance). The teacher runs in eval mode and draws no random numbers,
so the step computes what it computes in sequence; only the thread counts, and with them
the summation order of some kernels, differ.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


def thread_split(total: int) -> tuple[int, int]:
    """(the caller's, the teacher thread's) torch threads out of ``total``; the teacher's
    pass is the larger one (1 + 9 windows against the source pass's 2 crops, forward and
    backward), so it gets the odd thread."""
    teacher = (total + 1) // 2
    return total - teacher, teacher


class _Call(Generic[T]):
    """``fn()`` in a daemon thread that runs torch on ``threads`` threads."""

    def __init__(self, fn: Callable[[], T], threads: int) -> None:
        self._fn, self._threads = fn, threads
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hrda-teacher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        torch.set_num_threads(self._threads)  # this thread's OpenMP team only
        try:
            self._value = self._fn()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self) -> T:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


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
        call = _Call(fn, teacher)
        try:
            yield call.result
        finally:
            call.join()
    finally:
        torch.set_num_threads(total)
