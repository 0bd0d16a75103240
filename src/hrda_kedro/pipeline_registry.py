"""Project pipelines.

``uda`` chains ``ingestion`` -> ``warmup`` -> ``self_training`` (``rounds`` namespaced
rounds) -> ``evaluation``. The number of rounds shapes the graph, so it is read from the
run's configuration (``self_training.rounds``, environment and ``--params`` included).

Pipelines are listed explicitly rather than found with ``find_pipelines``: since Kedro 1.7
the CLI restricts discovery to the requested names, which cannot see composite pipelines
such as ``uda``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
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
from hrda_kedro.settings import CONFIG_LOADER_ARGS

logger = logging.getLogger(__name__)

_config_loader: Any = None


def use_config_loader(config_loader: Any) -> None:
    """Called by the project hook with the active session's configuration."""
    global _config_loader  # noqa: PLW0603 - one active Kedro context per process
    _config_loader = config_loader


def _run_parameters() -> Mapping[str, Any]:
    """The run's parameters; outside a session (e.g. ``kedro registry list``), ./conf's,
    loaded with the project's own loader settings (environments merged over base)."""
    if _config_loader is not None:
        return _config_loader["parameters"]
    conf = Path(os.environ.get("KEDRO_CONF_SOURCE", Path.cwd() / "conf"))
    if not conf.is_dir():
        return {}
    args = {**CONFIG_LOADER_ARGS, "default_run_env": os.environ.get("KEDRO_ENV", "local")}
    return OmegaConfigLoader(conf_source=str(conf), **args)["parameters"]


def _rounds(parameters: Mapping[str, Any]) -> int:
    """``self_training.rounds`` (0: source-only), read leniently: a bad value is reported at
    run start."""
    try:
        return max(int(parameters["self_training"]["rounds"]), 0)
    except (KeyError, TypeError, ValueError):
        return 1


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines."""
    parameters = _run_parameters()
    rounds = _rounds(parameters)
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
            "predict": predict.create_pipeline(model=f"round_{rounds}.model"),
            "ablations": ablations.create_pipeline(parameters),
            "export": export.create_pipeline(model=f"round_{rounds}.model"),
            "export_onnx": create_onnx_pipeline(model=f"round_{rounds}.model"),
        }
    uda = Pipeline([])
    for name in ("ingestion", "warmup", "self_training", "evaluation"):
        uda += pipelines[name]
    pipelines["uda"] = uda
    pipelines["__default__"] = uda
    return pipelines
