"""Experiment tracking in MLflow, when the optional ``mlflow`` extra (kedro-mlflow) is installed.

kedro-mlflow opens one MLflow run per ``kedro run`` (``conf/base/mlflow.yml``: a local file
store in ``mlruns/``) and logs every node's parameters, flattened. This module adds what
only the project knows:

- the training history (loss terms, lr, pseudo-label weight, it/s) every ``log_every``
  steps, from rank 0, as metrics ``<stage>/<term>`` with the iteration as step; spawned
  data-parallel workers log into the parent's run (:class:`StageLogger` is picklable);
- mIoU and pixel accuracy per model and prediction (``miou/<model>/<prediction>``);
- the report tables and figures, and the final model, as artifacts;
- for the ablations, one nested run per variant and seed under the study's run.

Without mlflow installed, or without an active run, every function here does nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_ABLATIONS = "ablations."

# The nested run of each ablation namespace (``ablations.<variant>.seed_<n>``), and the
# namespace of the node that runs now (SequentialRunner: one node at a time).
_nested_runs: dict[str, str] = {}
_current_namespace: str | None = None


def _mlflow() -> Any | None:
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow


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
    if _current_namespace not in _nested_runs:
        client = _client()
        experiment = client.get_run(parent).info.experiment_id
        name = _current_namespace.removeprefix(_ABLATIONS).replace(".", "/")
        variant, _, seed = _current_namespace.removeprefix(_ABLATIONS).partition(".")
        run = client.create_run(
            experiment,
            run_name=name,
            tags={"mlflow.parentRunId": parent, "variant": variant, "seed": seed},
        )
        client.log_param(run.info.run_id, "variant", variant)
        client.log_param(run.info.run_id, "seed", seed.removeprefix("seed_"))
        _nested_runs[_current_namespace] = run.info.run_id
    return _nested_runs[_current_namespace]


def discard_active_run() -> None:
    """Nodes > 0 of a multi-machine run: kedro-mlflow opened a run there too, but node 0's
    run holds everything (its rank 0 logs the training), so this one is deleted."""
    run_id = parent_run_id()
    if run_id is not None:
        mlflow = _mlflow()
        assert mlflow is not None
        mlflow.end_run()
        mlflow.MlflowClient().delete_run(run_id)


def _client() -> Any:
    mlflow = _mlflow()
    assert mlflow is not None
    return mlflow.MlflowClient()


def enter_node(namespace: str | None) -> None:
    """Called before each node: an ablation's nodes log into that ablation's nested run."""
    global _current_namespace  # noqa: PLW0603 - one node at a time (SequentialRunner)
    if namespace and namespace.startswith(_ABLATIONS):
        _current_namespace = ".".join(namespace.split(".")[:3])
    else:
        _current_namespace = None


def end_nested_runs() -> None:
    """Called after the pipeline: close the ablations' nested runs."""
    global _current_namespace  # noqa: PLW0603
    if _nested_runs and _mlflow() is not None:
        client = _client()
        for run_id in _nested_runs.values():
            client.set_terminated(run_id)
    _nested_runs.clear()
    _current_namespace = None


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
    end_nested_runs()
    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)


@dataclass(frozen=True)
class StageLogger:
    """``Trainer(on_log=...)``: history rows -> MLflow metrics ``<stage>/<term>``.

    Holds the tracking URI and run id, not a client, so that it pickles into spawned
    data-parallel workers, which then log into the parent's run.
    """

    tracking_uri: str
    run_id: str

    def __call__(self, stage: str, rows: list[dict[str, float]]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = []
        for row in rows:
            step = int(row["iteration"])
            values = {k: v for k, v in row.items() if k not in ("iteration", "seconds")}
            values["it_per_s"] = 1.0 / max(row["seconds"], 1e-9)  # as the console shows it
            metrics += [
                Metric(f"{stage}/{key}", float(value), stamp, step)
                for key, value in values.items()
                if math.isfinite(value)
            ]
        client = MlflowClient(self.tracking_uri)
        for start in range(0, len(metrics), _BATCH):
            client.log_batch(self.run_id, metrics=metrics[start : start + _BATCH])


def stage_logger() -> StageLogger | None:
    """A logger for the training stage the current node runs, or None when not tracking."""
    run_id = current_run_id()
    if run_id is None:
        return None
    mlflow = _mlflow()
    assert mlflow is not None
    return StageLogger(mlflow.get_tracking_uri(), run_id)


def log_saved(name: str, data: Any, catalog: Any) -> None:
    """After a dataset was saved: metrics from results, report files as artifacts."""
    run_id = current_run_id()
    if run_id is None:
        return
    client = _client()
    if name == "miou_table":
        client.log_batch(run_id, metrics=list(_miou_metrics(data.to_dict("records"))))
    elif name.endswith(".metrics") and isinstance(data, Mapping):
        numbers = {k: v for k, v in data.items() if _is_number(v)}
        for key, value in numbers.items():
            client.log_metric(run_id, key, float(value))
    path = _report_file(catalog, name)
    if path is not None:
        client.log_artifact(run_id, str(path), artifact_path="reports")


def log_model(catalog: Any, name: str) -> None:
    """The final model's checkpoint file as the artifact ``model/``."""
    run_id = parent_run_id()
    path = _file(catalog, name)
    if run_id is not None and path is not None:
        _client().log_artifact(run_id, str(path), artifact_path="model")


def _miou_metrics(rows: Iterable[Mapping[str, Any]]) -> Iterable[Any]:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    for row in rows:
        suffix = "" if row["classes"] == "all" else f"/{row['classes']}"
        for metric in ("miou", "pixel_accuracy", "small_class_miou"):
            if _is_number(row.get(metric)):
                key = f"{metric}/{row['model']}/{row['prediction']}{suffix}"
                yield Metric(key, float(row[metric]), stamp, 0)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _file(catalog: Any, name: str) -> Path | None:
    """The local file a catalog dataset last saved, if it is one file."""
    try:
        dataset = catalog.get(name)
        path = Path(str(dataset._get_load_path()))  # versioned: the version just saved
    except Exception:  # noqa: BLE001 - not a file dataset (memory, partitions, parameters)
        return None
    return path if path.is_file() else None


def _report_file(catalog: Any, name: str) -> Path | None:
    """The file of a dataset in the ``reporting`` layer (tables, figures, summaries)."""
    try:
        metadata = catalog.get(name).metadata or {}
    except Exception:  # noqa: BLE001 - not in the catalog
        return None
    if metadata.get("kedro-viz", {}).get("layer") != "reporting":
        return None
    return _file(catalog, name)
