"""Shared fixtures: a throw-away copy of the project for whole-pipeline runs, and one
finished tiny ``kedro run`` that every test reading a finished project shares."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import process_guard
from tests.reliability.helpers import kedro, make_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Tiny settings: a few seconds per stage on a laptop CPU.
TINY_PARAMS = {
    "runtime": {"progress_bar": False},
    "ingestion": {
        "workers": 1,
        "embedded": {
            "height": 64,
            "width": 128,
            "sizes": {"source_train": 6, "target_train": 4, "target_val": 2},
        },
    },
    "model": {
        "network": {"decoder_embed_dim": 16, "attention_embed_dim": 16},
        "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
    },
    "warmup": {"iterations": 3, "log_every": 1, "checkpoint_every": 2},
    "self_training": {"iterations": 2, "log_every": 1, "checkpoint_every": 1},
    "evaluation": {"progress_bar": False},
}


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """The suite leaves no process running: leftovers are listed, ended, and fail the run."""
    watching = process_guard.become_subreaper()
    yield
    if not watching:
        return
    alive = process_guard.leftovers(grace_seconds=15)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    process_guard.reap()
    assert not alive, f"processes left behind by the tests (now killed): {alive}"


@pytest.fixture(scope="session", autouse=True)
def project_logging() -> None:
    """Kedro applies the project's logging configuration (``dictConfig``, which replaces the
    root logger's handlers) the first time a process configures the project. Done here,
    before any test, so that a test's ``caplog`` handler is not the one it drops."""
    from kedro.framework.project import configure_project

    configure_project("hrda_kedro")


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Tiny tensors: thread start-up and contention on a shared CPU cost more than they save."""
    with torch_threads(1):
        yield


@pytest.fixture
def two_threads():
    """Two torch threads, whatever the machine: what splitting threads between streams needs."""
    with torch_threads(2):
        yield


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project after a complete, uninterrupted ``kedro run`` (the default ``uda``).

    Built once per session (the costliest set-up of the suite): tests only read it, or
    copy it first (``tests/reliability/conftest.py::trained``).
    """
    project = make_project(tmp_path_factory.mktemp("reference") / "project")
    result = kedro(project)
    assert result.returncode == 0, result.stdout[-5000:]
    return project


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pyproject + conf of this project in ``tmp_path``; data/ is written there."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    (root / ".telemetry").write_text("consent: false\n")  # the test's own decision, no prompt
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # bootstrap_project wants one; the package itself is installed
    monkeypatch.chdir(root)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    os.environ.pop("KEDRO_ENV", None)
    return root


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh SQLite-backed MLflow store in ``tmp_path`` (tests of the mlflow extra); the
    fixture below ends the runs a test leaves open."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    # Its default experiment: MLflow keeps the experiment a session's kedro-mlflow set (in
    # another store) as the process's active one.
    mlflow.set_experiment(experiment_id="0")
    return mlflow.MlflowClient(uri)


@pytest.fixture
def notebook_shell() -> Iterator[Any]:
    """A notebook kernel's IPython shell, without the kernel: ``run_cell`` fires the cell
    events (``post_run_cell``) that a kernel fires."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["PARAMS"] = {}
    yield shell
    InteractiveShell.clear_instance()


@pytest.fixture(autouse=True)
def no_mlflow_run_left_active():
    """Each test starts with no MLflow run active in the process, as a new ``kedro run``
    does (with the mlflow extra installed, kedro-mlflow reuses an active run)."""
    from hrda_kedro import tracking_runs

    tracking_runs.end_active_runs()
    yield
    tracking_runs.end_active_runs()
