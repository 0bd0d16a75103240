"""The pseudo-labels of the step's target crops: the EMA teacher's (online) or the
materialized ones (offline), weighted by confidence, with the border margins zeroed."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.uda.batches import CropBatch, border_margin_weights
from hrda_kedro.hrda.uda.config import PseudoLabelConfig
from hrda_kedro.hrda.uda.ema import EMATeacher
from hrda_kedro.hrda.uda.pseudo_labels import confidence_weights, make_pseudo_labels


class PseudoLabels(NamedTuple):
    labels: torch.Tensor  # int64 (B, H, W)
    weights: torch.Tensor  # float32 (B, H, W), margins zeroed


def teacher_pseudo_labels(
    teacher: EMATeacher | None,
    target: CropBatch,
    images: torch.Tensor,
    config: PseudoLabelConfig,
    setup: DeviceSetup,
) -> PseudoLabels:
    """Pseudo-labels of the normalised target crops ``images`` (of the host batch
    ``target``): the teacher's prediction (LR pass plus batched HR sliding windows), or,
    without a teacher, the batch's materialized labels and confidences."""
    if teacher is not None:
        # The student's passes run 2B crops per network call (B contexts, B details); the
        # teacher's 1 + 9 crops per image in calls of that size never need more memory.
        crops_per_call = 2 * images.shape[0]
        with record_function("teacher_forward"), torch.no_grad(), setup.autocast():
            logits = teacher.model.predict_window(images, max_crops_per_call=crops_per_call).fused
        logits = F.interpolate(
            logits.float(), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        labels, weights = make_pseudo_labels(
            logits, threshold=config.threshold, weight_mode=config.weight
        )
    else:
        if target.labels is None or target.weights is None:
            raise ValueError("offline pseudo-labels were requested but none were materialized")
        labels = setup.labels(target.labels)
        weights = confidence_weights(
            target.weights.to(setup.device, non_blocking=True), config.threshold, config.weight
        )
    # The confident share is over the whole crop; the margins are zeroed after it, each
    # image's scaled to its own size (official order; ours: per image, per-image scale).
    margins = border_margin_weights(target, config.margins, config.margins_reference_size)
    return PseudoLabels(labels, weights * margins.to(setup.device, non_blocking=True))
