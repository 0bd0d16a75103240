"""Which MLflow run a node logs into, in the main process and in ``ParallelRunner``'s workers.

kedro-mlflow opens one run per ``kedro run`` in the main process. The ablations log into one
nested run per variant and seed (``ablations.<variant>.seed_<n>``), all opened before the
first node, so that every process logs a namespace into the same run.

``ParallelRunner`` runs the node hooks in worker processes, where MLflow has no active run
(its run stack is per process) and, when they are spawned, kedro-mlflow's hook is a fresh,
unconfigured one: it would open a run of its own in each worker and log the parameters
there, unflattened. So the main process shares the runs and kedro-mlflow's settings with
its workers in an environment variable, and each worker joins the main process's run
before its first node (:func:`join_in_worker`).

Without mlflow installed, or without an active run, every function here does nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_ABLATIONS = "ablations."
_SHARED = "HRDA_KEDRO_MLFLOW_RUNS"  # the main process's runs, for ParallelRunner's workers
# What kedro-mlflow's hook reads from mlflow.yml when the run starts and needs to log a
# node's parameters (a spawned worker's hook never saw the run start).
_KEDRO_MLFLOW_SETTINGS = (
    "_is_mlflow_enabled",
    "flatten",
    "recursive",
    "sep",
    "long_params_strategy",
)

# The nested run of each ablation namespace, and the namespace of the node that runs now
# (one node at a time in each process: SequentialRunner, ParallelRunner's workers).
_nested_runs: dict[str, str] = {}
_current_namespace: str | None = None


def _mlflow() -> Any | None:
    """mlflow, or None without the optional extra that brings it."""
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow


def client() -> Any:
    mlflow = _mlflow()
    assert mlflow is not None
    return mlflow.MlflowClient()


def parent_run_id() -> str | None:
    """The run kedro-mlflow opened for this ``kedro run``, if any."""
    mlflow = _mlflow()
    if mlflow is None or mlflow.active_run() is None:
        return None
    return mlflow.active_run().info.run_id


def current_run_id() -> str | None:
    """The run that the node running now logs into: its ablation's nested run, or the parent."""
    parent = parent_run_id()
    if parent is None or _current_namespace is None:
        return parent
    return _nested_runs[_current_namespace]


def run_namespace(namespace: str | None) -> str | None:
    """``ablations.<variant>.seed_<n>`` of an ablation node's namespace, else None."""
    if namespace and namespace.startswith(_ABLATIONS):
        return ".".join(namespace.split(".")[:3])
    return None


def enter_node(namespace: str | None) -> None:
    """Called before each node: an ablation's nodes log into that ablation's nested run."""
    global _current_namespace  # noqa: PLW0603 - one node at a time in each process
    _current_namespace = run_namespace(namespace)


def start_pipeline(namespaces: Iterable[str | None]) -> None:
    """Before the first node, in the main process: open the nested run of every ablation
    among ``namespaces`` (the pipeline's nodes'), then share the runs with the workers."""
    parent = parent_run_id()
    if parent is not None:
        runs = sorted({run for run in map(run_namespace, namespaces) if run is not None})
        experiment = client().get_run(parent).info.experiment_id
        _nested_runs.update({run: _open_nested_run(experiment, parent, run) for run in runs})
    _share_with_workers(parent)


def _open_nested_run(experiment: str, parent: str, namespace: str) -> str:
    variant, _, seed = namespace.removeprefix(_ABLATIONS).partition(".")
    store = client()
    run = store.create_run(
        experiment,
        run_name=f"{variant}/{seed}",
        tags={"mlflow.parentRunId": parent, "variant": variant, "seed": seed},
    )
    store.log_param(run.info.run_id, "variant", variant)
    store.log_param(run.info.run_id, "seed", seed.removeprefix("seed_"))
    return run.info.run_id


def _share_with_workers(parent: str | None) -> None:
    """The runs and kedro-mlflow's settings, in the environment that the workers inherit."""
    mlflow = _mlflow()
    hook = _kedro_mlflow_hook()
    if mlflow is None or hook is None:
        return
    settings = {name: getattr(hook, name) for name in _KEDRO_MLFLOW_SETTINGS if hasattr(hook, name)}
    os.environ[_SHARED] = json.dumps(
        {
            "pid": os.getpid(),
            "tracking_uri": mlflow.get_tracking_uri(),
            "run_id": parent,
            "nested_runs": _nested_runs,
            "kedro_mlflow": settings,
        }
    )


def _kedro_mlflow_hook() -> Any | None:
    """kedro-mlflow's hook, the instance its entry point registers in every process."""
    try:
        from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook
    except ImportError:
        return None
    return mlflow_hook


def join_in_worker() -> None:
    """Before each node, first of all hooks: in a ``ParallelRunner`` worker, log into the
    main process's runs, and give kedro-mlflow's hook the settings it logs parameters with.

    The main process itself (any runner) shares the variable but never joins its own runs.
    """
    shared = os.environ.get(_SHARED)
    mlflow = _mlflow()
    if mlflow is None:
        return
    hook = _kedro_mlflow_hook()
    if shared is None:
        # A runner started without a Kedro session (in code, a notebook): Kedro registers
        # the plugins' hooks in each worker anyway, and kedro-mlflow's, never configured,
        # would log the node's parameters into a run of its own in MLflow's default store
        # (the workers creating it at once fail on each other's schema migrations). A fork
        # also inherits the run id an earlier session of the process left in the hook,
        # which it would reopen in the wrong store before every node.
        if hook is not None:
            hook._is_mlflow_enabled = False
            hook.run_id = None
        return
    state = json.loads(shared)
    if state["pid"] == os.getpid():
        return
    for name, value in state["kedro_mlflow"].items() if hook is not None else ():
        setattr(hook, name, value)
    _nested_runs.update(state["nested_runs"])
    if state["run_id"] is not None and mlflow.active_run() is None:
        mlflow.set_tracking_uri(state["tracking_uri"])
        # A spawned worker that exits ends this run (MLflow's atexit), as the pool shuts
        # down after the last node; the main process ends it again right after.
        mlflow.start_run(run_id=state["run_id"])


def end_pipeline(status: str = "FINISHED") -> None:
    """After the pipeline (or its error): close the nested runs, stop sharing the runs."""
    global _current_namespace  # noqa: PLW0603
    if _nested_runs and _mlflow() is not None:
        for run_id in _nested_runs.values():
            client().set_terminated(run_id, status)
    _nested_runs.clear()
    _current_namespace = None
    os.environ.pop(_SHARED, None)


def discard_active_run() -> None:
    """Nodes > 0 of a multi-machine run: kedro-mlflow opened a run there too, but node 0's
    run holds everything (its rank 0 logs the training), so this one is deleted."""
    run_id = parent_run_id()
    if run_id is not None:
        mlflow = _mlflow()
        assert mlflow is not None
        mlflow.end_run()
        mlflow.MlflowClient().delete_run(run_id)


@contextmanager
def run_ends_on_error() -> Iterator[None]:
    """End kedro-mlflow's run (status FAILED) when a run-start check stops the run.

    kedro-mlflow opens the run in its own ``before_pipeline_run`` and ends it in
    ``on_pipeline_error``, which Kedro calls only for errors in nodes: a run stopped by a
    run-start check would leave its MLflow run active in the process, and the next session
    there (a notebook) would log its parameters into that one and fail.
    """
    try:
        yield
    except BaseException:
        end_active_runs("FAILED")
        raise


def end_active_runs(status: str = "KILLED") -> None:
    """End every MLflow run active in this process (nested ablation runs first)."""
    mlflow = _mlflow()
    if mlflow is None:
        return
    end_pipeline(status)
    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)
