"""Plain progress lines for long loops: shown in log files, where no bar is."""

from __future__ import annotations

import pytest

from hrda_kedro import progress
from hrda_kedro.progress import LogProgress


def test_logs_at_most_every_interval_and_at_the_end(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 1.0, 31.0, 32.0, 40.0])  # start, then one reading per update
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    with caplog.at_level("INFO", logger="hrda_kedro.progress"):
        bar = LogProgress(4, "evaluate round_1", every_s=30)
        for _ in range(4):
            bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "evaluate round_1: 2/4 (50%), 0.06/s, ETA 0:00:31",
        "evaluate round_1: 4/4 (100%), 0.10/s, ETA 0:00:00",
    ]
