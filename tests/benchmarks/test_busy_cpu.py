"""benchmarks/busy_cpu.py: the competing load runs during the loaded units only, and the
quiet and loaded units alternate in one process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.benchmarks import load_script


def _script():
    return load_script("busy_cpu")


def _state(pid: int) -> str:
    """The process state letter of /proc/<pid>/stat (R running, S sleeping, T stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def _settled_state(pid: int, wait_s: float = 0.3) -> str:
    """ "T" once the process is seen stopped within ``wait_s`` (a stop signal takes effect
    when the kernel next interrupts the process), else its last state."""
    deadline = time.monotonic() + wait_s
    while (state := _state(pid)) != "T" and time.monotonic() < deadline:
        time.sleep(0.01)
    return state


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_load_is_paused_for_quiet_units_and_resumed_for_loaded_ones(monkeypatch) -> None:
    busy_cpu = _script()
    load = busy_cpu._start_load("spin", 1)
    pid = load[0].pid
    seen: list[str] = []
    monkeypatch.setattr(
        busy_cpu, "_phase", lambda *setting: lambda: seen.append(_settled_state(pid))
    )
    monkeypatch.setattr(busy_cpu, "LOAD_SETTLE_S", 0.05)
    try:
        assert _settled_state(pid) == "T"  # started busy, then paused
        result = busy_cpu.worker(
            {
                "phase": "train",
                "threads": 1,
                "repeats": 3,
                "warmup": 1,
                "train_steps": 5,
                "teacher_thread": "on",
                "streams": "auto",
                "images": 4,
                "load_pids": [pid],
            }  # fmt: skip
        )
        assert _settled_state(pid) == "T"  # paused again after the last loaded unit
    finally:
        busy_cpu._stop_load(load)
    assert load[0].poll() is not None
    # warmup (paused), then quiet / loaded alternating
    assert seen[0] == "T"
    assert seen[1::2] == ["T"] * 3
    assert all(state in "RS" for state in seen[2::2]) and len(seen[2::2]) == 3
    assert len(result["quiet_times_s"]) == len(result["loaded_times_s"]) == 3


def test_row_is_the_ratio_of_the_medians() -> None:
    busy_cpu = _script()
    args = busy_cpu._parser().parse_args(["--load", "2", "--load-kind", "spin"])
    result = {
        "quiet_times_s": [1.0, 3.0, 2.0],
        "loaded_times_s": [4.0, 6.0, 9.0],
        "quiet_nvcsw": 1.0,
        "loaded_nvcsw": 2.0,
        "loaded_nivcsw": 3.0,
        "cpu": "x",
        "torch": "y",
    }
    row = busy_cpu._row(args, "evaluate", 2, "brief", 2, result)
    assert (row["quiet_s"], row["loaded_s"], row["slowdown"]) == (2.0, 6.0, 3.0)
    assert row["quiet_times_s"] == "1.0000;3.0000;2.0000"
    failed = busy_cpu._row(args, "evaluate", 2, "brief", 2, {"error": "boom"})
    assert failed["error"] == "boom" and "slowdown" not in failed
