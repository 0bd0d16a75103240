"""Data-parallel workers end when the process that started them dies.

A worker blocked in a collective (here: the rendezvous, waiting for ranks of a second
machine that never comes) ignores the SIGINT torch asks for on its parent's death; it
would hold its memory, GPU memory on a GPU machine, until someone kills it by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests import process_guard

PARENT = textwrap.dedent(
    """
    import os
    from pathlib import Path

    from hrda_kedro.hrda.model_config import ModelConfig
    from hrda_kedro.hrda.training.config import TrainingConfig
    from hrda_kedro.params import RuntimeParams
    from hrda_kedro.stages import StageJob, run_stage

    if __name__ == "__main__":
        job = StageJob(
            stage="probe", model_params=ModelConfig(), train_params=TrainingConfig(iterations=1),
            runtime=RuntimeParams(device="cpu", devices=2, work_dir="."), source=None,
            class_pixel_counts=None, fingerprint="probe",
        )
        run_stage(job)  # the 2 local ranks wait for the 2 of NODE_RANK=1, which never come
    """
)


PORT = 29517


def _listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (``/proc/net/tcp``: state 0A)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _workers(parent: int) -> dict[int, str]:
    return {pid: cmd for pid, cmd in process_guard.children(parent).items() if "spawn_main" in cmd}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_spawned_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {
        **os.environ,
        "NNODES": "2",
        "NODE_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(PORT),
        "OMP_NUM_THREADS": "1",
    }
    parent = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(_workers(parent.pid)) < 2:
            assert parent.poll() is None, "the parent exited before starting its workers"
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.2)
        while not _listening(PORT):  # rank 0 hosts the rendezvous: the ranks are waiting
            assert time.monotonic() < deadline, "the workers never reached the rendezvous"
            time.sleep(0.2)
        time.sleep(1)
        workers = _workers(parent.pid)
        assert len(workers) == 2, "a worker ended on its own"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 30
    alive = list(workers)
    while alive and time.monotonic() < deadline:
        process_guard.reap()  # the session adopted them (subreaper): collect their exit
        time.sleep(0.2)
        alive = [pid for pid in workers if process_guard.alive(pid)]
    assert not alive, f"workers outlived their killed parent: {alive}"
