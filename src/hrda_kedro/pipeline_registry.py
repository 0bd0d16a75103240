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
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.pipeline import Pipeline

from hrda_kedro.pipelines import ablations, evaluation, ingestion, predict, self_training, warmup

logger = logging.getLogger(__name__)

_config_loader: Any = None


def use_config_loader(config_loader: Any) -> None:
    """Called by the project hook with the active session's configuration."""
    global _config_loader  # noqa: PLW0603 - one active Kedro context per process
    _config_loader = config_loader


def _rounds() -> int:
    loader = _config_loader
    if loader is None:
        conf = Path(os.environ.get("KEDRO_CONF_SOURCE", Path.cwd() / "conf"))
        if not conf.is_dir():
            return 1
        loader = OmegaConfigLoader(
            conf_source=str(conf),
            base_env="base",
            default_run_env=os.environ.get("KEDRO_ENV", "local"),
        )
    try:
        return int(loader["parameters"]["self_training"]["rounds"])
    except (KeyError, TypeError, ValueError):
        return 1


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines."""
    rounds = _rounds()
    pipelines = {
        "ingestion": ingestion.create_pipeline(),
        "warmup": warmup.create_pipeline(),
        "self_training": self_training.create_pipeline(rounds=rounds),
        "evaluation": evaluation.create_pipeline(rounds=rounds),
        "predict": predict.create_pipeline(),
        "ablations": ablations.create_pipeline(config_loader=_config_loader),
    }
    uda = Pipeline([])
    for name in ("ingestion", "warmup", "self_training", "evaluation"):
        uda += pipelines[name]
    pipelines["uda"] = uda
    pipelines["__default__"] = uda
    return pipelines
