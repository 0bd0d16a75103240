"""Pixel-weighted cross-entropy and HRDA's fused + detail loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hrda_kedro.hrda import IGNORE_INDEX
from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.model import MultiResOutput


def pixel_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Weighted mean cross-entropy over the non-ignored pixels.

    ``logits (B, C, h, w)`` are resized bilinearly (``align_corners=False``) to the size of
    ``labels (B, H, W)``. ``weights`` is per pixel ``(B, H, W)`` or per image ``(B,)``. The
    sum of ``weight * CE`` is divided by the number of non-ignored pixels; the official code
    divides by all pixels, which shrinks the loss of images with many ignored pixels. A batch
    with every pixel ignored gives 0 still attached to the graph (a zero gradient, no NaN).
    """
    if logits.dim() != 4 or labels.dim() != 3 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"logits must be (B, C, h, w) and labels (B, H, W) with the same B, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits, labels, reduction="none", ignore_index=ignore_index)
    if weights is not None:
        if weights.shape == labels.shape[:1]:
            weights = weights[:, None, None]
        elif weights.shape != labels.shape:
            raise ValueError(
                f"weights must be (B,) or (B, H, W) = {tuple(labels.shape)}, got {tuple(weights.shape)}"
            )
        loss = loss * weights
    num_valid = (labels != ignore_index).sum().clamp_min(1)
    return loss.sum() / num_valid


def _crop_each(tensor: torch.Tensor, boxes: list[Box]) -> torch.Tensor:
    return torch.stack([box.crop(tensor[i]) for i, box in enumerate(boxes)])


def hrda_loss(
    output: MultiResOutput,
    labels_hr: torch.Tensor,
    detail_boxes: list[Box],
    weights: torch.Tensor | None = None,
    hr_loss_weight: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(1 - lambda) * CE(fused, labels) + lambda * CE(detail, labels in the detail box)``.

    ``labels_hr`` (and per-pixel ``weights``) cover the HR context crop; ``detail_boxes`` are
    the boxes given to ``forward_train``. The ablation modes are read from the output: with
    no detail branch (``lr_only``) only the fused term counts, with no context branch
    (``hr_only``) only the detail term, each at full weight so the loss scale is unchanged.
    Returns the loss and its detached terms for logging. ``hr_loss_weight`` is taken as
    given: it is :attr:`HRDAConfig.hr_loss_weight
    <hrda_kedro.hrda.model_config.HRDAConfig>`, checked once when the config is built.
    """
    has_context = output.context is not None
    has_detail = output.detail is not None
    terms: dict[str, torch.Tensor] = {}
    if has_context:
        terms["fused"] = pixel_cross_entropy(output.fused, labels_hr, weights)
    if has_detail:
        detail_weights = (
            weights if weights is None or weights.dim() == 1 else _crop_each(weights, detail_boxes)
        )
        terms["detail"] = pixel_cross_entropy(
            output.detail, _crop_each(labels_hr, detail_boxes), detail_weights
        )
    if has_context and has_detail:
        loss = (1 - hr_loss_weight) * terms["fused"] + hr_loss_weight * terms["detail"]
    else:
        (loss,) = terms.values()
    return loss, {name: term.detach() for name, term in terms.items()}
