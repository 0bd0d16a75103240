"""Experiment tracking in MLflow, when the optional ``mlflow`` extra (kedro-mlflow) is installed.

kedro-mlflow opens one MLflow run per ``kedro run`` (``conf/base/mlflow.yml``: a local
store in the project) and logs every node's parameters, flattened. This module adds what
only the project knows, logged into the run :mod:`hrda_kedro.tracking_runs` picks for
the node running now (in the main process or in a ``ParallelRunner`` worker):

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrda_kedro.tracking_runs import client, current_run_id, parent_run_id, run_namespace

logger = logging.getLogger(__name__)

_BATCH = 1000  # MLflow's limit of metrics per log_batch call


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
    from mlflow import get_tracking_uri

    return StageLogger(get_tracking_uri(), run_id)


REPORTING = "08_reporting"  # the catalog's reporting folder, mirrored under reports/


def log_saved(name: str, data: Any, catalog: Any) -> None:
    """After a dataset was saved: metrics from results, report files as artifacts."""
    run_id = current_run_id()
    if run_id is None:
        return
    store = client()
    if name == "miou_table":
        store.log_batch(run_id, metrics=list(_miou_metrics(data.to_dict("records"))))
    elif name.endswith(".metrics") and isinstance(data, Mapping):
        numbers = {k: v for k, v in data.items() if _is_number(v)}
        for key, value in numbers.items():
            store.log_metric(run_id, key, float(value))
    path = _report_file(catalog, name)
    if path is not None:
        store.log_artifact(run_id, str(path), artifact_path=report_artifact_folder(name, path))


def report_artifact_folder(name: str, path: Path) -> str:
    """Where a report dataset's file ``path`` goes among its run's artifacts: ``reports/``
    and the file's folder under ``08_reporting`` (a version's folders left out), below its
    run's own (``round_1/training_history.csv`` -> ``reports/round_1``; an ablation's
    ``ablations/hrda/seed_1/round_1/...``, logged into the nested run of ``hrda/seed_1``,
    likewise). Every stage writes a ``training_history.csv``: under ``reports/`` alone,
    each replaced the last."""
    configured = path.parent.parent if path.parent.parent.name == path.name else path
    parts = configured.parent.parts
    below = parts[parts.index(REPORTING) + 1 :] if REPORTING in parts else ()
    nested = run_namespace(name.rpartition(".")[0])
    run_folders = tuple(nested.split(".")) if nested else ()
    if below[: len(run_folders)] == run_folders:
        below = below[len(run_folders) :]
    return "/".join(["reports", *below])


def log_model(catalog: Any, name: str) -> None:
    """The final model's checkpoint file as the artifact ``model/``."""
    run_id = parent_run_id()
    path = _file(catalog, name)
    if run_id is not None and path is not None:
        client().log_artifact(run_id, str(path), artifact_path="model")


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
