"""Batched sliding-window inference at any image size.

Window logits are averaged on the network's stride-``o`` output grid and upsampled to pixels
once at the end, so a translation-equivariant network gives exactly its whole-image output
(per-window upsampling would blur each window edge differently).

Images of any size are handled by zero padding at the bottom and right (zero is the ImageNet
mean colour after normalisation) up to a multiple of the alignment and at least one window;
only the output cells that overlap the real image are upsampled, then the result is cropped
to the input size, so the padding never leaks into the interpolation.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

from hrda_kedro.hrda.crops import Box

if TYPE_CHECKING:
    from hrda_kedro.hrda.model import HRDAModel

logger = logging.getLogger(__name__)

PredictFn = Callable[[torch.Tensor], torch.Tensor]


def _positive_pair(name: str, hw: tuple[int, int]) -> tuple[int, int]:
    if len(hw) != 2:
        raise ValueError(f"{name} must be (height, width), got {hw!r}")
    height, width = (operator.index(v) for v in hw)
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} must be positive, got {hw!r}")
    return height, width


def _offsets(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one axis: every ``stride``, the last snapped to the border."""
    if window >= size:
        return [0]
    offsets = list(range(0, size - window, stride))
    offsets.append(size - window)
    return offsets


def sliding_window_boxes(
    image_hw: tuple[int, int], window_hw: tuple[int, int], stride_hw: tuple[int, int]
) -> list[Box]:
    """Windows covering the image, row-major, the last row/column snapped to the border.

    A window larger than the image along an axis is clamped to the image size there (one
    window on that axis); callers that need full-size windows pad first, as
    :func:`sliding_window_logits` does.
    """
    image_h, image_w = _positive_pair("image_hw", image_hw)
    window_h, window_w = _positive_pair("window_hw", window_hw)
    stride_h, stride_w = _positive_pair("stride_hw", stride_hw)
    if stride_h > window_h or stride_w > window_w:
        raise ValueError(
            f"stride_hw {stride_hw} must not exceed window_hw {window_hw}: pixels would be skipped"
        )
    box_h, box_w = min(window_h, image_h), min(window_w, image_w)
    return [
        Box(top, left, box_h, box_w)
        for top in _offsets(image_h, box_h, stride_h)
        for left in _offsets(image_w, box_w, stride_w)
    ]


def window_crops(
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    output_stride: int,
) -> tuple[list[Box], list[Box]]:
    """The sliding windows over ``images`` and their boxes on the stride-``o`` grid.

    The image size, the stride and the (clamped) window must be multiples of
    ``output_stride`` so that every window lands on whole output cells. Crop ``i`` of a
    batch is window ``i // B`` of image ``i % B`` (:func:`cut_crops`).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    image_h, image_w = images.shape[-2:]
    boxes = sliding_window_boxes((image_h, image_w), window_hw, stride_hw)
    box_h, box_w = boxes[0].height, boxes[0].width
    if any(v % output_stride for v in (image_h, image_w, box_h, box_w, *stride_hw)):
        raise ValueError(
            f"image size {image_h}x{image_w}, window {box_h}x{box_w} and stride {stride_hw} "
            f"must be multiples of output_stride={output_stride}"
        )
    return boxes, [box.scaled_down(output_stride) for box in boxes]


def cut_crops(images: torch.Tensor, boxes: list[Box], indices: range) -> torch.Tensor:
    """Crops ``indices`` of all windows of all images, window-major: ``(len(indices), 3, h, w)``."""
    num_images = images.shape[0]
    return torch.stack([boxes[i // num_images].crop(images[i % num_images]) for i in indices])


def stitch_grid(
    logits: torch.Tensor, grid_boxes: list[Box], num_images: int, grid_hw: tuple[int, int]
) -> torch.Tensor:
    """Average window-major crop logits ``(windows * B, C, h, w)`` into ``(B, C, *grid_hw)``."""
    logits = logits.unflatten(0, (len(grid_boxes), num_images))
    total = logits.new_zeros((num_images, logits.shape[2], *grid_hw))
    counts = logits.new_zeros((1, 1, *grid_hw))
    for window, grid_box in enumerate(grid_boxes):
        total[..., grid_box.top : grid_box.bottom, grid_box.left : grid_box.right] += logits[window]
        counts[..., grid_box.top : grid_box.bottom, grid_box.left : grid_box.right] += 1
    return total / counts


def sliding_window_grid(
    predict_fn: PredictFn,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    output_stride: int,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Average window logits on the stride-``o`` grid: ``(B, C, H/o, W/o)``.

    ``predict_fn`` maps ``(N, 3, h, w)`` crops to ``(N, C, h/o, w/o)`` logits. The crops of
    all windows and all images run in batches of ``batch_size`` crops (all at once when
    None). The image size, the stride and the (clamped) window must be multiples of
    ``output_stride`` so that every window lands on whole output cells.
    """
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch_size must be positive or None, got {batch_size}")
    boxes, grid_boxes = window_crops(images, window_hw, stride_hw, output_stride)
    num_images = images.shape[0]
    image_h, image_w = images.shape[-2:]
    box_h, box_w = boxes[0].height, boxes[0].width
    # Crops are cut per chunk to bound memory.
    num_crops = len(boxes) * num_images
    chunk = num_crops if batch_size is None else batch_size
    outputs = [
        predict_fn(cut_crops(images, boxes, range(start, min(start + chunk, num_crops))))
        for start in range(0, num_crops, chunk)
    ]
    logits = torch.cat(outputs)
    expected = (box_h // output_stride, box_w // output_stride)
    if logits.shape[0] != num_crops or tuple(logits.shape[-2:]) != expected:
        raise ValueError(
            f"predict_fn returned shape {tuple(logits.shape[1:])} per crop for {box_h}x{box_w} "
            f"crops; expected spatial size {expected} (output_stride={output_stride})"
        )
    grid_hw = (image_h // output_stride, image_w // output_stride)
    return stitch_grid(logits, grid_boxes, num_images, grid_hw)


def sliding_window_logits(
    predict_fn: PredictFn,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
    *,
    output_stride: int = 1,
    align: int | None = None,
) -> torch.Tensor:
    """Full-resolution logits ``(B, C, H, W)`` of images of any size by sliding windows.

    Window and stride must be multiples of ``align`` (default ``output_stride``; HRDA needs
    ``s * o``). The images are zero padded at the bottom/right to a multiple of ``align`` and
    to at least one window, the window logits are averaged on the stride-``o`` grid
    (:func:`sliding_window_grid`), the cells overlapping the image are upsampled bilinearly
    by ``o`` and the result is cropped to ``H x W``.
    """
    align = output_stride if align is None else align
    if align <= 0 or align % output_stride:
        raise ValueError(
            f"align={align} must be a positive multiple of output_stride={output_stride}"
        )
    window_h, window_w = _positive_pair("window_hw", window_hw)
    stride_h, stride_w = _positive_pair("stride_hw", stride_hw)
    if any(v % align for v in (window_h, window_w, stride_h, stride_w)):
        raise ValueError(
            f"window_hw {window_hw} and stride_hw {stride_hw} must be multiples of align={align}"
        )
    image_h, image_w = images.shape[-2:]
    padded_h = max(math.ceil(image_h / align) * align, window_h)
    padded_w = max(math.ceil(image_w / align) * align, window_w)
    padded = F.pad(images, (0, padded_w - image_w, 0, padded_h - image_h))
    grid = sliding_window_grid(
        predict_fn,
        padded,
        (window_h, window_w),
        (stride_h, stride_w),
        output_stride,
        batch_size=batch_size,
    )
    cells_h, cells_w = math.ceil(image_h / output_stride), math.ceil(image_w / output_stride)
    grid = grid[..., :cells_h, :cells_w]
    if output_stride > 1:
        grid = F.interpolate(
            grid,
            size=(cells_h * output_stride, cells_w * output_stride),
            mode="bilinear",
            align_corners=False,
        )
    return grid[..., :image_h, :image_w]


def predict_full_image(
    model: HRDAModel,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
) -> torch.Tensor:
    """HRDA test-time prediction: logits ``(B, C, H, W)`` at the input resolution.

    Each ``window_hw`` window (the HR context size) goes through
    :meth:`HRDAModel.predict_window`; ``batch_size`` windows (across windows and images) go
    per call, all at once when None. Window and stride must be multiples of ``s * o``.
    """
    logger.debug(
        "sliding-window prediction of %s images with windows %s, stride %s",
        tuple(images.shape),
        window_hw,
        stride_hw,
    )
    return _stitch_windows(
        model,
        lambda windows: model.predict_window(windows).fused,
        images,
        window_hw,
        stride_hw,
        batch_size,
    )


def _stitch_windows(
    model: HRDAModel,
    per_window: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None,
) -> torch.Tensor:
    """Context-size windows through ``per_window`` (any channels on the stride-o grid), stitched."""
    return sliding_window_logits(
        per_window,
        images,
        window_hw,
        stride_hw,
        batch_size=batch_size,
        output_stride=model.output_stride,
        align=model.scale * model.output_stride,
    )


def _on_grid_of(tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``tensor`` bilinearly resized to ``reference``'s grid (as in the fusion)."""
    resized = F.interpolate(tensor, size=reference.shape[-2:], mode="bilinear", align_corners=False)
    return resized.to(reference.dtype)


def predict_full_image_with_attention(
    model: HRDAModel,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`predict_full_image`'s logits and HRDA's scale attention, in one pass.

    Each window's attention (:meth:`HRDAModel.predict_window`, on its LR grid) is upsampled
    to the fused logits' grid as in the fusion and stitched with them (same windows,
    averaged where they overlap, upsampled bilinearly): ``(B, A, H, W)`` in ``[0, 1]``,
    the weight the detail branch got at every pixel; ``A`` is ``num_classes`` for
    class-wise attention, else 1. The logits are exactly :func:`predict_full_image`'s.
    Models without an attention (``lr_only``, ``hr_only``) give None.
    """
    if model.mode in ("lr_only", "hr_only"):
        return predict_full_image(model, images, window_hw, stride_hw, batch_size), None

    def fused_and_attention(windows: torch.Tensor) -> torch.Tensor:
        output = model.predict_window(windows)
        attention = _on_grid_of(cast(torch.Tensor, output.attention), output.fused)
        return torch.cat([output.fused, attention], dim=1)

    stitched = _stitch_windows(model, fused_and_attention, images, window_hw, stride_hw, batch_size)
    num_classes = model.network.num_classes
    return stitched[:, :num_classes], stitched[:, num_classes:]


def predict_full_image_branches(
    model: HRDAModel,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Fused, LR-context-only and HR-detail-only logits ``(B, C, H, W)`` from one pass.

    One :meth:`HRDAModel.predict_window` call already computes all three, so evaluating the
    value of fusion costs one multi-resolution pass, not three. The ``context`` and
    ``detail`` logits equal :func:`predict_full_image` in ``lr_only`` / ``hr_only`` mode.
    Models trained without one branch (``lr_only``, ``hr_only``) give ``fused`` only.
    """
    if model.mode in ("lr_only", "hr_only"):
        return {"fused": predict_full_image(model, images, window_hw, stride_hw, batch_size)}

    def all_branches(windows: torch.Tensor) -> torch.Tensor:
        output = model.predict_window(windows)
        context = _on_grid_of(cast(torch.Tensor, output.context), output.fused)
        return torch.cat([output.fused, context, cast(torch.Tensor, output.detail)], dim=1)

    stitched = _stitch_windows(model, all_branches, images, window_hw, stride_hw, batch_size)
    fused, context, detail = stitched.chunk(3, dim=1)
    return {"fused": fused, "context": context, "detail": detail}
