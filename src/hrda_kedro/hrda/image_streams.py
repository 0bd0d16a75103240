"""Whole images predicted in parallel streams on a CPU, each stream on its share of torch's
threads.

Pseudo-label materialization and evaluation predict one image after another, each through
a few small batches of sliding windows. On a CPU, one image on two threads spends much of
its time at the OpenMP barrier that ends every parallel region; and when other processes
take the CPU, one descheduled thread stalls the other for a scheduler time slice. Two
images on one thread each meet at no barrier: on a 2-core VM they took 0.44x to 0.93x
the time of one image on two threads, and 0.76x to 0.83x next to two competing processes
(``benchmarks/busy_cpu.py``; docs/performance.md). Each image is computed by one thread
from start to end, so a prediction does not depend on which stream ran it or when.

GPUs keep one stream: the kernels queue on the device, and a second host thread only
contends for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

# "auto" runs at most this many streams: each holds one image's windows and logits, so the
# count bounds memory on a many-core CPU; beyond it, streams get more threads each.
MAX_AUTO_STREAMS = 4


def auto_streams(device: torch.device, threads: int) -> int:
    """Streams for ``runtime.predict_streams: auto``: one per torch thread on a CPU (at most
    :data:`MAX_AUTO_STREAMS`), one on a GPU."""
    if device.type != "cpu":
        return 1
    return max(1, min(threads, MAX_AUTO_STREAMS))


def map_in_streams(fn: Callable[[T], R], items: Iterable[T], streams: int) -> Iterator[R]:
    """``fn(item)`` for every item, in order, computed in ``streams`` threads that share
    torch's threads between them (at least one each).

    Every stream keeps working while the caller uses a result, and at most ``streams + 1``
    results exist at once, so memory stays bounded whatever the number of items. ``fn``
    runs without autograd. With one stream it runs in the caller's thread, as a plain loop.
    An error in ``fn`` is raised in the caller, and closing the iterator early cancels what
    has not started.

    The caller's autograd switch and thread count are its own again whenever it holds the
    last result: a caller that takes exactly as many results as it gave items (a lazy
    writer) leaves this generator suspended at its last ``yield``, and torch keeps both
    settings per process or per thread, not per generator.
    """
    if streams <= 1:
        for item in items:
            with torch.no_grad():
                result = fn(item)
            yield result
        return
    total = torch.get_num_threads()
    each = max(1, total // streams)

    def job(item: T) -> R:
        # Autograd's switch is per thread: the caller's no_grad does not reach the pool.
        with torch.no_grad():
            return fn(item)

    pending: deque[Future[R]] = deque()
    # torch.set_num_threads sizes the calling thread's OpenMP team but also sets the value
    # torch.get_num_threads reports to every thread: the caller's is restored at the end.
    pool = ThreadPoolExecutor(
        streams, "hrda-image", initializer=torch.set_num_threads, initargs=(each,)
    )
    last: list[R] = []
    try:
        for item in items:
            pending.append(pool.submit(job, item))
            if len(pending) > streams:
                yield pending.popleft().result()
        while len(pending) > 1:
            yield pending.popleft().result()
        last = [pending.popleft().result()] if pending else []
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        torch.set_num_threads(total)
    yield from last
