"""The thread governor: one torch thread while the step waits for cores, back when they free."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from hrda_kedro.hrda.training import cpu_threads
from hrda_kedro.hrda.training.cpu_threads import CpuSample, CpuWindow, ThreadGovernor

BUSY = CpuWindow(wait_share=0.6, idle_cores=0.0)
QUIET = CpuWindow(wait_share=0.02, idle_cores=1.0)
STILL_BUSY = CpuWindow(wait_share=0.1, idle_cores=0.2)  # on one thread, no core to spare


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_window_shares_come_from_the_counters() -> None:
    old = CpuSample(0.0, run_ns=1_000, wait_ns=0, idle_ticks=100, total_ticks=1_000)
    new = CpuSample(2.0, run_ns=4_000, wait_ns=1_000, idle_ticks=150, total_ticks=1_200)
    window = CpuWindow.between(old, new, cores=2)
    assert window.wait_share == pytest.approx(1_000 / 4_000)
    assert window.idle_cores == pytest.approx(2 * 50 / 200)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux counters")
def test_the_kernel_counters_are_read_here() -> None:
    first = CpuSample.read()
    sum(range(200_000))
    second = CpuSample.read()
    assert first is not None and second is not None
    assert second.run_ns > first.run_ns and second.total_ticks >= first.total_ticks


def test_one_thread_while_the_step_waits_for_cores_then_back(two_threads: None) -> None:
    governor = ThreadGovernor(act=True, cores=2)
    governor.decide(QUIET)
    assert torch.get_num_threads() == 2
    governor.decide(BUSY)
    assert torch.get_num_threads() == 1 and governor.reduced
    governor.decide(STILL_BUSY)
    assert torch.get_num_threads() == 1
    governor.decide(QUIET)
    assert torch.get_num_threads() == 2 and not governor.reduced


def test_close_restores_the_configured_threads(two_threads: None) -> None:
    governor = ThreadGovernor(act=True, cores=2)
    governor.decide(BUSY)
    governor.close()
    assert torch.get_num_threads() == 2


def test_off_it_only_warns_once(two_threads: None, caplog: pytest.LogCaptureFixture) -> None:
    governor = ThreadGovernor(act=False, cores=2)
    with caplog.at_level(logging.WARNING, logger=cpu_threads.__name__):
        governor.decide(BUSY)
        governor.decide(BUSY)
    assert torch.get_num_threads() == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "runtime.adaptive_threads: true" in warnings[0]


def test_nothing_to_govern_on_one_thread() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert not ThreadGovernor(act=True).enabled
    finally:
        torch.set_num_threads(before)


def test_observe_judges_windows_of_at_least_the_interval(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window shorter than ``interval_s`` is not judged (one slow step is no load); the
    kernel's counters are read only when one is."""
    now = [0.0]
    reads: list[float] = []

    def busy_counters() -> CpuSample:  # 60 % of the runnable time spent waiting
        reads.append(now[0])
        ns = int(now[0] * 1e9)
        return CpuSample(now[0], int(ns * 0.4), int(ns * 0.6), 0, int(now[0] * 200))

    monkeypatch.setattr(CpuSample, "read", staticmethod(busy_counters))
    monkeypatch.setattr(cpu_threads, "time", SimpleNamespace(monotonic=lambda: now[0]))
    governor = ThreadGovernor(act=True, interval_s=2.0, cores=2)
    now[0] = 1.0
    governor.observe()
    assert reads == [0.0] and torch.get_num_threads() == 2
    now[0] = 2.5
    governor.observe()
    assert reads == [0.0, 2.5] and torch.get_num_threads() == 1
    governor.close()
