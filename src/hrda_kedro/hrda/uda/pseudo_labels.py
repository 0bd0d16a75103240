"""Pseudo-labels and their confidence weights from the teacher's logits.

The teacher's argmax is the label; its confidence decides how much the target loss trusts
it. DACS/DAFormer weight every target pixel by one scalar, the fraction of confident
pixels, which down-weights whole images the teacher is unsure about without discarding
the uncertain pixels (the ``"pixel"`` mode discards them instead).

The scalar is computed over *all* pixels of the crop, as in the official code; the border
margins (the ego-car hood) get weight 0 afterwards, per image and by the crop's position
in its image (``hrda.uda.batches.border_margin_weights``), as the official
``valid_pseudo_mask`` does. Difference from the official code (deliberate): the scalar is
computed *per image* (official: one scalar for the whole batch). Everything stays on the
device; there is no ``.item()``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

# HRDA ignores these border bands of Cityscapes pseudo-labels (mostly the ego-car hood),
# given as (top, bottom, left, right) pixels of a 2048x1024 image.
HRDA_MARGINS = (30, 240, 30, 30)
HRDA_MARGINS_REFERENCE_HW = (1024, 2048)

WeightMode = Literal["scalar", "pixel"]


def scale_margins(
    image_hw: tuple[int, int],
    margins: tuple[int, int, int, int] = HRDA_MARGINS,
    reference_hw: tuple[int, int] = HRDA_MARGINS_REFERENCE_HW,
) -> tuple[int, int, int, int]:
    """Margins ``(top, bottom, left, right)`` given at ``reference_hw`` scaled to ``image_hw``.

    Top/bottom scale with the height, left/right with the width, rounded half up, so the
    bands cover the same fraction of the image at any resolution.
    """
    height, width = image_hw
    ref_h, ref_w = reference_hw
    top, bottom, left, right = margins
    if min(height, width, ref_h, ref_w) <= 0 or min(margins) < 0:
        raise ValueError(
            f"sizes must be positive and margins >= 0, got image_hw={image_hw}, "
            f"reference_hw={reference_hw}, margins={margins}"
        )
    return (
        math.floor(top * height / ref_h + 0.5),
        math.floor(bottom * height / ref_h + 0.5),
        math.floor(left * width / ref_w + 0.5),
        math.floor(right * width / ref_w + 0.5),
    )


@torch.no_grad()
def make_pseudo_labels(
    teacher_logits: torch.Tensor,
    threshold: float = 0.968,
    weight_mode: WeightMode = "scalar",
    output_hw: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``int64 (B, H, W)`` and weights ``float32 (B, H, W)`` from ``(B, C, h, w)`` logits.

    ``output_hw`` first resizes the logits bilinearly to the label frame (as the losses
    resize logits to label size); otherwise the label frame is the logits' grid.

    - ``"scalar"``: each image's weight is the fraction of its pixels whose max softmax
      probability is ``>= threshold``, broadcast to every pixel.
    - ``"pixel"``: weight 1 where the max probability is ``>= threshold``, else 0.

    Border margins are not applied here: the caller zeroes them afterwards, so they never
    change the scalar (official order).
    """
    if teacher_logits.ndim != 4:
        raise ValueError(f"teacher_logits must be (B, C, H, W), got {tuple(teacher_logits.shape)}")
    if weight_mode not in ("scalar", "pixel"):
        raise ValueError(f"weight_mode must be 'scalar' or 'pixel', got {weight_mode!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    logits = teacher_logits.float()
    if output_hw is not None and tuple(logits.shape[-2:]) != tuple(output_hw):
        logits = F.interpolate(logits, size=output_hw, mode="bilinear", align_corners=False)
    max_prob, labels = torch.softmax(logits, dim=1).max(dim=1)
    return labels, confidence_weights(max_prob, threshold, weight_mode)


def confidence_weights(
    confidence: torch.Tensor, threshold: float, weight_mode: WeightMode = "scalar"
) -> torch.Tensor:
    """Loss weights ``float32 (B, H, W)`` from max-softmax confidences ``(B, H, W)``.

    The one rule behind online (teacher logits) and offline (materialized confidence
    maps) pseudo-labels: the share of confident pixels of each whole image, or the
    per-pixel indicator.
    """
    confident = confidence >= threshold
    if weight_mode == "pixel":
        return confident.float()
    fraction = confident.float().mean(dim=(1, 2))
    return fraction.view(-1, 1, 1).expand_as(confidence).contiguous()
