"""Confusion matrix, per-class IoU and mIoU summaries.

Confusion matrices are plain ``int64`` tensors (rows = ground truth, columns = prediction)
so they can be summed over images and batches before any IoU is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from hrda_kedro.hrda import IGNORE_INDEX


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 counts of (ground truth, prediction) pairs.

    Pixels whose target is ``ignore_index`` are skipped; any other value outside
    ``[0, num_classes)`` in either tensor raises, rather than being silently dropped or
    folded into a wrong cell.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    valid = target != ignore_index
    gt = target[valid].long()
    pr = pred[valid].long()
    for name, values in (("target", gt), ("pred", pr)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} holds values outside [0, {num_classes}) other than ignore_index={ignore_index}"
            )
    counts = torch.bincount(gt * num_classes + pr, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU per class as float64; NaN where a class has neither ground truth nor prediction."""
    cm = cm.double()
    true_pos = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - true_pos
    return true_pos / union  # 0 / 0 -> NaN


def _subset_indices(
    class_names: Sequence[str], class_subset: Sequence[int] | Sequence[str] | None
) -> list[int]:
    if class_subset is None:
        return list(range(len(class_names)))
    indices = []
    for item in class_subset:
        index = class_names.index(item) if isinstance(item, str) and item in class_names else item
        if not isinstance(index, int) or not 0 <= index < len(class_names):
            raise ValueError(
                f"class_subset entry {item!r} is not a class name or index of {class_names}"
            )
        indices.append(index)
    return indices


def summarize(
    cm: torch.Tensor,
    class_names: Sequence[str],
    class_subset: Sequence[int] | Sequence[str] | None = None,
) -> dict[str, float | dict[str, float]]:
    """mIoU over ``class_subset`` (names or indices; all classes if None), IoU per class, accuracy.

    Classes of the subset with no ground-truth pixel are left out of the mean: their IoU
    (NaN, or 0 if they were predicted) says nothing about how they are segmented, and a
    small evaluation set would otherwise be dominated by them. The Cityscapes script and
    mmseg count a predicted-but-absent class as 0; on the full validation sets every class
    is present and the two agree. ``iou`` holds every subset class as computed by
    :func:`iou_per_class`. Pixel accuracy is over all non-ignored pixels.
    """
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"cm shape {tuple(cm.shape)} does not match {len(class_names)} class names"
        )
    indices = _subset_indices(class_names, class_subset)
    ious = iou_per_class(cm)
    present = cm.sum(dim=1) > 0
    counted = [i for i in indices if present[i]]
    # NaN when no class of the subset occurs: the caller, which knows the subset's name and
    # the data, says so once.
    miou = float(ious[counted].mean()) if counted else math.nan
    total = int(cm.sum())
    accuracy = int(cm.diagonal().sum()) / total if total else math.nan
    return {
        "miou": miou,
        "pixel_accuracy": accuracy,
        "iou": {class_names[i]: float(ious[i]) for i in indices},
    }
