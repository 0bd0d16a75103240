"""Hashes of what a stage trains on and with: a stage resumes only when they match."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from hrda_kedro.data import DataError

# Settings that do not change the weights a stage trains: how often it logs and saves, how
# it reads its images (every random draw stays on the training thread, so batches do not
# depend on them) and how many rounds follow (each round has its own schedule). Changing
# one to resume a killed run, or adding a round, must not throw finished training away.
_STAGE_BOOKKEEPING = frozenset(
    {"log_every", "checkpoint_every", "cache_images", "decode_threads", "rounds"}
)
# How test-time inference batches its windows: the same numbers, in other calls.
_WINDOW_BATCHING = frozenset({"window_batch", "hr_window_batch"})
# HRDA settings used only where windows are slid over an image (test time and the EMA
# teacher's pseudo-labels): a source-only warmup's training pass never slides.
_SLIDING_ONLY = frozenset({"hr_slide_overlapping"})


def trained_settings(
    model: Mapping[str, Any],
    stage: Mapping[str, Any],
    *,
    reads_inference: bool,
    slides_windows: bool = True,
) -> dict[str, Any]:
    """The parameters that shape a stage's weights: its ``model`` and stage group (``warmup``
    or ``self_training``) without their bookkeeping, for the stage's fingerprint.

    ``model.inference`` (test-time windows) counts only where the stage trains on labels
    predicted with it (``reads_inference``: offline pseudo-labels), and its batching never;
    ``model.hrda.hr_slide_overlapping`` only where the stage slides windows in training
    (``slides_windows``: self-training's teacher, not the warmup).
    """
    inference = model.get("inference") or {}
    kept_inference = (
        {key: value for key, value in inference.items() if key not in _WINDOW_BATCHING}
        if reads_inference
        else None
    )
    kept_model = {k: v for k, v in model.items() if k != "inference"}
    if not slides_windows and "hrda" in kept_model:
        kept_model["hrda"] = {k: v for k, v in model["hrda"].items() if k not in _SLIDING_ONLY}
    return {
        "model": {**kept_model, "inference": kept_inference},
        "stage": {k: v for k, v in stage.items() if k not in _STAGE_BOOKKEEPING},
    }


def fingerprint(**parts: Any) -> str:
    """Stable hashes of named JSON-able parts, ``data=1a2b... parameters=3c4d...``.

    A stage resumes only from a checkpoint of the same fingerprint; when they differ the
    trainer names the parts that changed, so the log says why a stage re-runs.
    """
    return " ".join(
        f"{name}={hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]}"
        for name, value in sorted(parts.items())
    )


# What a manifest row's training data are: the files' bytes and the size they are loaded at
# (not their paths: a project moved to another disk resumes).
_CONTENT_COLUMNS = ("name", "content_sha256", "load_height", "load_width")


def manifest_digest(manifest: pd.DataFrame) -> str:
    """sha256 of a manifest's data content, so that a stage re-runs when its images change."""
    missing = [c for c in _CONTENT_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(
            f"manifest without the columns {missing}: written by an older version; expected "
            "one written by the ingestion pipeline, re-run it (kedro run --pipeline=ingestion)"
        )
    rows = manifest[list(_CONTENT_COLUMNS)].astype(str).to_numpy().tolist()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
