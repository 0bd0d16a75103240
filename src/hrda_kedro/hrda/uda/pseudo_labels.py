"""Pseudo-labels and their confidence weights from the teacher's logits.

The teacher's argmax is the label; its confidence decides how much the target loss trusts
it. DACS/DAFormer weight every target pixel by one scalar, the fraction of confident
pixels, which down-weights whole images the teacher is unsure about without discarding
the uncertain pixels (the ``"pixel"`` mode discards them instead).

Differences from the official code (deliberate): the scalar is computed *per image*
(official: one scalar for the whole batch) and over the pixels outside the border margins
only (official: over all pixels, so a confidently predicted ego-car hood inflates it).
Everything stays on the device; there is no ``.item()``.
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


def margin_mask(
    image_hw: tuple[int, int],
    margins: tuple[int, int, int, int],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean ``(H, W)`` mask, False inside the border bands ``(top, bottom, left, right)``."""
    height, width = image_hw
    top, bottom, left, right = margins
    if min(margins) < 0:
        raise ValueError(f"margins must be >= 0, got {margins}")
    mask = torch.zeros(image_hw, dtype=torch.bool, device=device)
    mask[top : max(height - bottom, top), left : max(width - right, left)] = True
    return mask


@torch.no_grad()
def make_pseudo_labels(
    teacher_logits: torch.Tensor,
    threshold: float = 0.968,
    weight_mode: WeightMode = "scalar",
    margins: tuple[int, int, int, int] = (0, 0, 0, 0),
    output_hw: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``int64 (B, H, W)`` and weights ``float32 (B, H, W)`` from ``(B, C, h, w)`` logits.

    ``output_hw`` first resizes the logits bilinearly to the label frame (as the losses
    resize logits to label size); otherwise the label frame is the logits' grid.
    ``margins`` are ``(top, bottom, left, right)`` pixels of that frame whose weight is 0;
    they are the *frame's* edges, so a crop that does not touch the image border should
    pass margins that exclude that side (see :func:`scale_margins`).

    - ``"scalar"``: each image's weight is the fraction of its non-margin pixels whose
      max softmax probability is ``>= threshold``, broadcast to every non-margin pixel.
    - ``"pixel"``: weight 1 where the max probability is ``>= threshold``, else 0.
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
    valid = margin_mask(tuple(labels.shape[-2:]), margins, device=labels.device)
    return labels, confidence_weights(max_prob, threshold, weight_mode, valid)


def confidence_weights(
    confidence: torch.Tensor,
    threshold: float,
    weight_mode: WeightMode = "scalar",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss weights ``float32 (B, H, W)`` from max-softmax confidences ``(B, H, W)``.

    The one rule behind online (teacher logits) and offline (materialized confidence
    maps) pseudo-labels. ``valid`` (bool, ``(H, W)``) marks the pixels that count; the
    others get weight 0 and stay out of the scalar fraction.
    """
    confident = confidence >= threshold
    if valid is None:
        valid = torch.ones(confident.shape[-2:], dtype=torch.bool, device=confident.device)
    if weight_mode == "pixel":
        return (confident & valid).float()
    n_valid = valid.sum().clamp_min(1)
    fraction = (confident & valid).sum(dim=(1, 2)).float() / n_valid
    return fraction.view(-1, 1, 1) * valid.float()
