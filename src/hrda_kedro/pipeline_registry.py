"""Project pipelines.

``uda`` chains ``ingestion`` -> ``warmup`` -> ``self_training`` (``rounds`` namespaced
rounds) -> ``evaluation``. The number of rounds shapes the graph, so it is read from the
run's configuration (``self_training.rounds``, environment and ``--params`` included).
``predict``, ``export`` and ``export_onnx`` read the run's final model
(:func:`~hrda_kedro.pipelines.self_training.pipeline.final_model`: the last round's, or the
warmup's ``source_only_model`` with ``rounds: 0``).

Pipelines are listed explicitly rather than found with ``find_pipelines``: since Kedro 1.7
the CLI restricts discovery to the requested names, which cannot see composite pipelines
such as ``uda``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Pipeline

from hrda_kedro.pipelines import (
    ablations,
    evaluation,
    export,
    ingestion,
    predict,
    self_training,
    warmup,
)
from hrda_kedro.pipelines.export.pipeline import create_onnx_pipeline
from hrda_kedro.run_config import run_parameters


def _rounds(parameters: Mapping[str, Any]) -> int:
    """``self_training.rounds`` (0: source-only), read leniently: a bad value is reported at
    run start."""
    try:
        return max(int(parameters["self_training"]["rounds"]), 0)
    except (KeyError, TypeError, ValueError):
        return 1


def _predict_checkpoint(parameters: Mapping[str, Any]) -> Any:
    """``predict.checkpoint``, read leniently: a path set there replaces the catalog's model,
    so predict must not load (or need) that one."""
    try:
        return parameters["predict"]["checkpoint"]
    except (KeyError, TypeError):
        return None


def register_pipelines(parameters: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """Register the project's pipelines, shaped by ``parameters`` (Kedro passes none: the
    run's, :func:`hrda_kedro.run_config.run_parameters`)."""
    if parameters is None:
        parameters = run_parameters()
    rounds = _rounds(parameters)
    model = self_training.final_model(rounds)
    # Kedro warns when a node reads a dotted dataset name outside its namespace; ours are
    # all Kedro namespaces (``round_1.model`` feeds round 2 and the evaluation), not
    # hand-made dots, so the warning would only repeat on every command.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        pipelines = {
            "ingestion": ingestion.create_pipeline(),
            "warmup": warmup.create_pipeline(),
            "self_training": self_training.create_pipeline(rounds=rounds),
            "evaluation": evaluation.create_pipeline(rounds=rounds),
            "predict": predict.create_pipeline(
                model=None if _predict_checkpoint(parameters) else model
            ),
            "ablations": ablations.create_pipeline(parameters),
            "export": export.create_pipeline(model=model),
            "export_onnx": create_onnx_pipeline(model=model),
        }
    uda = Pipeline([])
    for name in ("ingestion", "warmup", "self_training", "evaluation"):
        uda += pipelines[name]
    pipelines["uda"] = uda
    pipelines["__default__"] = uda
    return pipelines
