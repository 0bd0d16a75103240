"""Nodes of the source-only warmup."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.params import RuntimeParams, parse
from hrda_kedro.runtime.fingerprints import fingerprint, manifest_digest, trained_settings
from hrda_kedro.stages import checkpoint_payload, run_stage, source_stage_job

logger = logging.getLogger(__name__)


def train_source_only(
    source_train_manifest: pd.DataFrame,
    source_class_pixel_counts: pd.DataFrame,
    model: dict[str, Any],
    warmup: dict[str, Any],
    runtime: dict[str, Any],
    *,
    stage: str,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the source-only model: the baseline reports compare against and round 1 starts from.

    ``warmup.iterations: 0`` is allowed and hands on the initial (e.g. ImageNet) weights.
    ``stage`` (bound by the template) names the stage's work folder; the model is
    ``source_only``.
    """
    model_params = parse(ModelConfig, model, "model")
    train_params = parse(TrainingConfig, warmup, "warmup")
    runtime_params = parse(RuntimeParams, runtime, "runtime")
    job = source_stage_job(
        stage,
        model_params,
        train_params,
        runtime_params,
        source_train_manifest,
        source_class_pixel_counts,
        fingerprint=fingerprint(
            parameters=(
                trained_settings(model, warmup, reads_inference=False, slides_windows=False),
                runtime_params.seed,
            ),
            data=manifest_digest(source_train_manifest),
        ),
    )
    result = run_stage(job)
    # A 0-iteration warmup (the paper recipe adapts from ImageNet weights) logs no step; the
    # header keeps the CSV readable for the training-curves report.
    history = pd.DataFrame(result.history, columns=None if result.history else ["iteration"])
    return checkpoint_payload(result, model_params, "source_only"), history
