"""One torch thread for training while other processes keep the CPU busy.

A training step runs thousands of short parallel regions, and its threads meet at the end
of each. When other processes compete for the cores, one of the step's threads is often
descheduled and the others wait for it at the next barrier: on 2 cores next to two
busy 2-thread processes the step slowed 3.8x, where losing two thirds of the CPU should
cost 3.0x, and next to a heavier load two threads were several times slower than one
(README, Performance, "A busy CPU"). One thread has no barrier to wait at.

:class:`ThreadGovernor` watches two counters of the Linux kernel over windows of about
``interval_s`` of training: how long the training thread was runnable but waiting for a
core (``/proc/thread-self/schedstat``), and how much of the machine was idle
(``/proc/stat``). When the thread waits for a core more than ``busy_wait_share`` of the
window it drops the step to one torch thread; back on one thread, it returns to the
configured count once the machine has idle cores for the other threads again. Torch's
CPU kernels sum in an order that depends on the thread count, so the results then
depend on the machine's load: this is off by default (``runtime.adaptive_threads``), and
with it off the governor only tells, once, that the step is waiting for cores.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_SCHEDSTAT = Path("/proc/thread-self/schedstat")
_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuSample:
    """The kernel's counters at one moment."""

    wall_s: float
    run_ns: int  # the calling thread's time on a core
    wait_ns: int  # its time runnable, waiting for a core
    idle_ticks: int  # the machine's idle and iowait time, all cores
    total_ticks: int

    @staticmethod
    def read() -> CpuSample | None:
        """The counters now, or None where the kernel does not provide them."""
        try:
            run_ns, wait_ns = (int(v) for v in _SCHEDSTAT.read_text().split()[:2])
            cpu = [int(v) for v in _STAT.read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)
        return CpuSample(time.monotonic(), run_ns, wait_ns, idle, sum(cpu[:8]))


@dataclass(frozen=True)
class CpuWindow:
    """What happened between two samples."""

    wait_share: float  # of the thread's runnable time, the share spent waiting for a core
    idle_cores: float  # mean number of idle cores

    @staticmethod
    def between(old: CpuSample, new: CpuSample, cores: int) -> CpuWindow:
        runnable = (new.run_ns - old.run_ns) + (new.wait_ns - old.wait_ns)
        ticks = new.total_ticks - old.total_ticks
        return CpuWindow(
            wait_share=(new.wait_ns - old.wait_ns) / runnable if runnable > 0 else 0.0,
            idle_cores=cores * (new.idle_ticks - old.idle_ticks) / ticks if ticks > 0 else 0.0,
        )


class ThreadGovernor:
    """Drops a CPU training loop to one torch thread under competing load, and back.

    Call :meth:`observe` after each step (it reads the kernel's counters at most every
    ``interval_s``) and :meth:`close` at the end, which restores the configured count.
    """

    def __init__(
        self,
        act: bool,
        *,
        interval_s: float = 2.0,
        busy_wait_share: float = 0.25,
        free_core_share: float = 0.75,
        cores: int | None = None,
    ) -> None:
        self.act = act
        self.threads = torch.get_num_threads()
        self.interval_s = interval_s
        self.busy_wait_share = busy_wait_share
        self.free_core_share = free_core_share
        self.cores = cores or os.cpu_count() or 1
        self.reduced = False
        self._warned = False
        self._last = CpuSample.read()

    @property
    def enabled(self) -> bool:
        """Whether there is anything to govern: several threads and the kernel's counters."""
        return self.threads > 1 and self._last is not None

    def observe(self) -> None:
        """Look at the window since the last look, when it is long enough, and act on it."""
        if not self.enabled or time.monotonic() - self._last.wall_s < self.interval_s:
            return
        sample = CpuSample.read()
        if sample is None:
            return
        self.decide(CpuWindow.between(self._last, sample, self.cores))
        self._last = sample

    def decide(self, window: CpuWindow) -> None:
        """One thread when the step waits for cores; the configured count when they are free."""
        if not self.reduced and window.wait_share > self.busy_wait_share:
            if not self.act:
                self._warn_once(window)
                return
            torch.set_num_threads(1)
            self.reduced = True
            logger.info(
                "busy CPU: the step waited for a core %.0f%% of its time; training on one "
                "torch thread (of %d) while the load lasts",
                100 * window.wait_share,
                self.threads,
            )
        elif self.reduced and window.idle_cores >= self.free_core_share * (self.threads - 1):
            torch.set_num_threads(self.threads)
            self.reduced = False
            logger.info("the CPU is free again: training on %d torch threads", self.threads)

    def close(self) -> None:
        if self.reduced:
            torch.set_num_threads(self.threads)
            self.reduced = False

    def _warn_once(self, window: CpuWindow) -> None:
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "busy CPU: the training step waited for a core %.0f%% of its time; its %d "
            "threads then wait for each other. Set runtime.adaptive_threads: true (one "
            "thread while the load lasts) or OMP_NUM_THREADS=1",
            100 * window.wait_share,
            self.threads,
        )
