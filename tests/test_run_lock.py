"""One writing run per project: a second run is refused, naming the first; the lock goes
with the run (its end, its failure, its process); predict runs beside a training run."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kedro.io import DatasetError

from hrda_kedro import run_lock
from hrda_kedro.run_lock import LOCK_FILE, OUTPUTS_LOCK_FILE, ProjectBusyError
from tests import process_guard
from tests.reliability.helpers import (
    assert_unchanged,
    copy_project,
    latest_version,
    run_in_process,
    snapshot,
)

_HOLDER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from hrda_kedro import run_lock\n"
    "try:\n"
    "    run_lock.acquire(Path(sys.argv[1]), 'uda', Path(sys.argv[2]))\n"
    "except run_lock.ProjectBusyError as err:\n"
    "    print('busy:', err, flush=True)\n"
    "    sys.exit(3)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"  # holds until the test closes its stdin
)


@contextmanager
def held_elsewhere(project: Path, lock: Path = LOCK_FILE) -> Iterator[subprocess.Popen[str]]:
    """The project's ``lock``, held by another process for the duration of the block."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(project), str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


def other_process_acquires(project: Path) -> bool:
    """Whether another process can take the lock now (it lets go at once)."""
    result = subprocess.run(
        [sys.executable, "-c", _HOLDER, str(project), str(LOCK_FILE)],
        input="", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.returncode == 0


@pytest.fixture(autouse=True)
def _released() -> Iterator[None]:
    yield
    run_lock.release()


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path) as holder:
        with pytest.raises(ProjectBusyError) as refused:
            run_lock.acquire(tmp_path, "warmup")
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / LOCK_FILE}: another kedro run is writing")
    assert f"pid {holder.pid} on " in message and "pipeline uda, started 20" in message


def test_the_lock_goes_with_its_process_and_its_release(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path) as holder:
        os.kill(holder.pid, signal.SIGKILL)  # a killed run leaves its file, not its lock
        holder.wait(timeout=30)
        run_lock.acquire(tmp_path, "warmup")
    assert '"pipeline": "warmup"' in (tmp_path / LOCK_FILE).read_text()
    run_lock.acquire(tmp_path, "warmup")  # the same process again: held already
    assert not other_process_acquires(tmp_path)
    run_lock.release()
    assert other_process_acquires(tmp_path)


@pytest.mark.slow
def test_a_run_beside_a_training_run_is_refused_before_any_work_but_predict_runs(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two-runs case that once went wrong silently: the first run's evaluation scored
    the second run's newer models under its own name."""
    project = copy_project(reference, tmp_path / "project")
    monkeypatch.chdir(project)
    before = snapshot(project / "data")
    with held_elsewhere(project):
        for pipeline in ("evaluation", "warmup"):
            with pytest.raises(ProjectBusyError, match="pipeline uda"):
                run_in_process(project, pipeline)
        assert_unchanged(before, project / "data")
        images = project / "data" / "01_raw" / "predict_inputs"  # the default input folder
        images.mkdir()
        shutil.copy(next((project / "data" / "01_raw").rglob("*.png")), images / "a.png")
        run_in_process(project, "predict")
    assert (project / "data" / "07_model_output" / "predict" / "labels" / "a.png").is_file()
    # A run that ended (ingestion, nothing to redo) and one that failed in a node (every
    # model unreadable) both let the lock go.
    run_in_process(project, "ingestion")
    assert other_process_acquires(project)
    for model in ("source_only", "round_1", "round_2"):
        latest_version(project / "data" / "06_models" / model / "model.pt").write_text("x")
    with pytest.raises(DatasetError, match="model"):
        run_in_process(project, "evaluation")
    assert other_process_acquires(project)


def test_a_file_system_that_cannot_lock_warns_and_lets_the_run_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A network mount without a lock manager answers ENOLCK: refusing every run there
    would make the project unusable, so it runs unprotected and says so."""
    import fcntl

    def no_locks(*args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    run_lock.acquire(tmp_path, "uda")
    assert "cannot lock ([Errno" in caplog.text  # ENOLCK's number differs between systems
    assert "No locks available); runs of one project are not kept apart" in caplog.text


def test_a_lock_file_this_user_cannot_open_warns_and_lets_the_run_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another user's lock file on shared storage (or a read-only data/): no traceback."""

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / LOCK_FILE))

    monkeypatch.setattr(Path, "open", refused)
    run_lock.acquire(tmp_path, "uda")
    assert f"{tmp_path / LOCK_FILE}: cannot lock ([Errno" in caplog.text
    assert (
        "Permission denied" in caplog.text
        and "runs of one project are not kept apart" in caplog.text
    )


def test_a_second_predict_is_refused_before_any_work(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two predict runs at once replaced each other's labels half-way and drew one run's
    overlays from the other's listing; both ended with status 0."""
    project = copy_project(reference, tmp_path / "project")
    monkeypatch.chdir(project)
    images = project / "data" / "01_raw" / "predict_inputs"
    images.mkdir()
    shutil.copy(next((project / "data" / "01_raw").rglob("*.png")), images / "a.png")
    before = snapshot(project / "data")
    with held_elsewhere(project, OUTPUTS_LOCK_FILE):
        with pytest.raises(ProjectBusyError, match="one run of predict or an export"):
            run_in_process(project, "predict")
        assert_unchanged(before, project / "data")
    run_in_process(project, "predict")
    assert (project / "data" / "07_model_output" / "predict" / "labels" / "a.png").is_file()


_FORKING_HOLDER = (
    "import multiprocessing, sys, time\n"
    "from pathlib import Path\n"
    "from hrda_kedro import run_lock\n"
    "run_lock.acquire(Path(sys.argv[1]), 'uda')\n"
    "worker = multiprocessing.get_context('fork').Process(target=time.sleep, args=(120,))\n"
    "worker.start()\n"
    "print(worker.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_killed_runs_forked_workers_neither_keep_the_lock_nor_outlive_it(
    tmp_path: Path,
) -> None:
    """A ParallelRunner run killed with SIGKILL left its forked workers running: they held
    the lock (every later run refused, naming a dead pid) and saved a model afterwards."""
    run = subprocess.Popen(
        [sys.executable, "-c", _FORKING_HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert run.stdout is not None
    worker = int(run.stdout.readline())
    assert not other_process_acquires(tmp_path)
    run.kill()
    run.wait(timeout=30)
    assert other_process_acquires(tmp_path)
    deadline = time.monotonic() + 30
    while process_guard.alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_guard.alive(worker)
