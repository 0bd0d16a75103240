"""Nodes of the source-only warmup."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.params import ModelParams, RuntimeParams, parse
from hrda_kedro.runtime import (
    check_images_fit,
    fingerprint,
    manifest_digest,
    source_datasets,
)
from hrda_kedro.stages import StageJob, checkpoint_payload, run_stage

logger = logging.getLogger(__name__)


def train_source_only(
    source_train_manifest: pd.DataFrame,
    source_class_pixel_counts: pd.DataFrame,
    model: dict[str, Any],
    warmup: dict[str, Any],
    runtime: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the source-only model: the baseline reports compare against and round 1 starts from.

    ``warmup.iterations: 0`` is allowed and hands on the initial (e.g. ImageNet) weights.
    """
    model_params = parse(ModelParams, model, "model")
    train_params = parse(TrainingConfig, warmup, "warmup")
    runtime_params = parse(RuntimeParams, runtime, "runtime")
    check_images_fit(source_train_manifest, model_params, "source_train")
    source, counts = source_datasets(source_train_manifest, source_class_pixel_counts, train_params)
    job = StageJob(
        stage="warmup",
        model_params=model_params,
        train_params=train_params,
        runtime=runtime_params,
        source=source,
        target=None,
        class_pixel_counts=counts,
        init_model=None,
        init_teacher=None,
        imagenet_network=None,
        checkpoint_path=Path(runtime_params.work_dir) / "warmup" / "state.pt",
        fingerprint=fingerprint(
            parameters=(model, warmup, runtime_params.seed),
            data=manifest_digest(source_train_manifest),
        ),
    )
    result = run_stage(job)
    # A 0-iteration warmup (the paper recipe adapts from ImageNet weights) logs no step; the
    # header keeps the CSV readable for the training-curves report.
    history = pd.DataFrame(result.history, columns=None if result.history else ["iteration"])
    return checkpoint_payload(result, model_params, "source_only"), history
