"""Report tables assembled from the pipeline's JSON outputs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from hrda_kedro.data.labels import CITYSCAPES_CLASSES

PSEUDO_LABEL_COLUMNS = ("round", "images", "confident_pixel_share", "miou", "pixel_accuracy")


def json_ready(value: Any) -> Any:
    """``value`` with every NaN or infinite float, at any depth, replaced by None: JSON has
    no NaN (Python writes a bare ``NaN`` that strict parsers refuse), and an IoU of a class
    absent from the ground truth is NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def pseudo_label_quality_table(qualities: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per round: images, confident-pixel share, mIoU, pixel accuracy, IoU per class.

    The scores need target-train labels; a round assessed without them has NaN there, so
    rounds of different data sets still fit one table.
    """
    rows = []
    for name, quality in qualities.items():
        iou = quality.get("iou", {})
        rows.append(
            {
                "round": name,
                "images": quality.get("images", 0),
                "confident_pixel_share": quality.get("confident_pixel_share", math.nan),
                "miou": quality.get("miou", math.nan),
                "pixel_accuracy": quality.get("pixel_accuracy", math.nan),
                **{c: iou.get(c, math.nan) for c in CITYSCAPES_CLASSES},
            }
        )
    return pd.DataFrame(rows, columns=[*PSEUDO_LABEL_COLUMNS, *CITYSCAPES_CLASSES])
