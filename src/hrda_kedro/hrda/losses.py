"""Pixel-weighted cross-entropy and HRDA's fused + detail loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hrda_kedro.hrda import IGNORE_INDEX
from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.model import MultiResOutput


class _UpsampledCrossEntropy(torch.autograd.Function):
    """Per-pixel ``CE(up(logits), labels) * scale`` that keeps only the low-resolution logits.

    The plain composition (``F.interpolate``, ``F.cross_entropy``) keeps the whole batch's
    log-probabilities (``C`` floats per label pixel) for backward, where two more tensors
    of that size meet them: at small crops, the step's memory peak. Here nothing of that
    size outlives forward, and backward recomputes them one image at a time. Every value
    goes through the operators autograd runs for the plain composition, in the same order,
    so the loss and the gradient are the same bit for bit (``tests/hrda/test_losses.py``).
    The logits are float32 (or wider): :func:`pixel_cross_entropy` casts bf16 ones, so every
    step computes in the logits' own dtype, autocast or not.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        logits: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
        ignore_index: int,
    ) -> torch.Tensor:
        """Per-pixel losses ``(B, H, W)``; ``scale`` weighs each pixel (0 where ignored)."""
        losses = [
            F.cross_entropy(
                _resized(logits[image : image + 1], labels.shape[-2:]),
                labels[image : image + 1],
                reduction="none",
                ignore_index=ignore_index,
            )
            for image in range(logits.shape[0])
        ]
        # Ignored pixels have a zero gradient (scale 0); any class index serves them.
        ctx.save_for_backward(logits, torch.where(labels == ignore_index, 0, labels), scale)
        return torch.cat(losses) * scale

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        logits, labels, scale = ctx.saved_tensors
        per_pixel = grad * scale  # the product's backward
        size = labels.shape[-2:]
        grads = []
        for image in range(logits.shape[0]):
            log_probs = _log_probs(logits[image : image + 1], size)
            # NLL's backward: minus the pixel's gradient at its label, 0 elsewhere.
            one_hot = torch.zeros_like(log_probs).scatter_(
                1, labels[image : image + 1, None], -per_pixel[image : image + 1, None]
            )
            grad_hr = torch.ops.aten._log_softmax_backward_data(
                one_hot, log_probs, 1, log_probs.dtype
            )
            del one_hot, log_probs
            if size != logits.shape[-2:]:
                grad_hr = torch.ops.aten.upsample_bilinear2d_backward(
                    grad_hr, list(size), [1, *logits.shape[1:]], False
                )
            grads.append(grad_hr)
        return torch.cat(grads), None, None, None


def _log_probs(logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """What ``F.cross_entropy`` computes first: log-softmax of the resized logits."""
    return torch.log_softmax(_resized(logits, size), dim=1)


def _resized(logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """The logits at the label size (bilinear, ``align_corners=False``, as mmseg's resize)."""
    if logits.shape[-2:] == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def pixel_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Weighted mean cross-entropy over the non-ignored pixels.

    ``logits (B, C, h, w)`` are resized bilinearly (``align_corners=False``) to the size of
    ``labels (B, H, W)``. ``weights`` is per pixel ``(B, H, W)`` or per image ``(B,)`` and
    gets no gradient. The sum of ``weight * CE`` is divided by the number of non-ignored
    pixels; the official code divides by all pixels, which shrinks the loss of images with
    many ignored pixels. A batch with every pixel ignored gives 0 still attached to the
    graph (a zero gradient, no NaN). The full-resolution logits are not kept for backward
    (:class:`_UpsampledCrossEntropy`). Logits of a lower precision (bf16 autocast) are cast
    to float32 first, as mmseg's ``force_fp32`` does for the official decode head's losses:
    a softmax in bf16 loses the small probabilities, and its gradient met float32 weights.
    """
    if logits.dim() != 4 or labels.dim() != 3 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"logits must be (B, C, h, w) and labels (B, H, W) with the same B, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if weights is not None:
        if weights.shape == labels.shape[:1]:
            weights = weights[:, None, None]
        elif weights.shape != labels.shape:
            raise ValueError(
                f"weights must be (B,) or (B, H, W) = {tuple(labels.shape)}, got {tuple(weights.shape)}"
            )
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    valid = labels != ignore_index
    # Ignored pixels weigh 0, as in F.cross_entropy's ignore_index; the weights get no gradient.
    scale = valid.to(logits.dtype) if weights is None else weights.detach() * valid
    losses = _UpsampledCrossEntropy.apply(logits, labels, scale, ignore_index)
    return losses.sum() / valid.sum().clamp_min(1)


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
