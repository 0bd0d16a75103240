"""The project's ParallelRunner: its spawned workers run the project's hooks."""

from __future__ import annotations

from typing import Any

import pytest
from kedro.framework import project
from kedro.io import MemoryDataset, SharedMemoryDataCatalog
from kedro.pipeline import Node, Pipeline

from hrda_kedro import hooks
from hrda_kedro.runner import ParallelRunner


def _run_in_worker(
    monkeypatch: pytest.MonkeyPatch, start_method: str, pipeline: Pipeline, output: str
) -> Any:
    """``output`` of ``pipeline`` run by the project's ParallelRunner in one worker started
    with ``start_method``, the project configured as ``kedro run`` does."""
    monkeypatch.setattr(project, "PACKAGE_NAME", project.PACKAGE_NAME)  # restored after
    project.configure_project("hrda_kedro")
    monkeypatch.setenv("KEDRO_MP_CONTEXT", start_method)
    catalog = SharedMemoryDataCatalog({"start": MemoryDataset(0)})
    runner = ParallelRunner(max_workers=1)  # its manager holds the outputs
    runner.run(pipeline, catalog)
    return catalog.load(output)


def _hooks_in_worker(_: int) -> list[str]:
    from kedro.framework.project import settings

    return [type(hook).__name__ for hook in settings.HOOKS]


def _same(hooks: list[str]) -> list[str]:
    return hooks


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_workers_run_the_project_hooks(monkeypatch: pytest.MonkeyPatch, start_method) -> None:
    """Kedro's own runner: no project hook in a spawned worker (``settings.HOOKS == ()``).
    Two nodes in one worker: Kedro's bootstrap of a worker broke at the second."""
    pipeline = Pipeline(
        [
            Node(_hooks_in_worker, "start", "hooks", name="hooks"),
            Node(_same, "hooks", "same_hooks", name="same"),
        ]
    )
    assert _run_in_worker(monkeypatch, start_method, pipeline, "same_hooks") == [
        "ProjectHooks",
        "LauncherHooks",
        "TrackingHooks",
        "ProjectRootHooks",
        "InterruptedRunHooks",
    ]


def _checks_in_worker(_: int) -> dict:
    from hrda_kedro.hooks import deferred_checks

    return deferred_checks()


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_workers_get_the_checks_of_the_first_training_node(
    monkeypatch: pytest.MonkeyPatch, start_method: str
) -> None:
    """A run that ingests checks its rare class sampling and its target images' size when
    its first training node starts, which a worker runs: a spawned worker had no checks to
    make (``tests/reliability/test_second_round.py`` for a whole run)."""
    checks = {"sampling": {"warmup": {"rare_class_sampling": {"min_pixels": 7}}}}
    hooks.defer_checks(checks)
    try:
        pipeline = Pipeline([Node(_checks_in_worker, "start", "checks", name="checks")])
        assert _run_in_worker(monkeypatch, start_method, pipeline, "checks") == checks
    finally:
        hooks.defer_checks({})


def _threads_in_worker(_: int) -> list[str]:
    import threading

    return [thread.name for thread in threading.enumerate()]


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_workers_end_with_the_runs_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path, start_method: str
) -> None:
    """Workers of a run killed with SIGKILL went on training and saved a model
    (``tests/test_run_lock.py`` kills one): each now watches its parent."""
    from hrda_kedro import run_lock

    run_lock.acquire(tmp_path, "uda")  # what a run holds when its runner forks
    try:
        pipeline = Pipeline([Node(_threads_in_worker, "start", "threads", name="threads")])
        threads = _run_in_worker(monkeypatch, start_method, pipeline, "threads")
    finally:
        run_lock.release()
    assert "exit-with-parent" in threads
