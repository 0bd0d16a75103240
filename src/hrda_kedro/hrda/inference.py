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


WINDOW_WEIGHTS = ("uniform", "tapered")
ProgressFn = Callable[[int, int], None]


def window_weight_map(grid_hw: tuple[int, int], kind: str) -> torch.Tensor | None:
    """Per-cell weight of one window's logits in the overlap average, ``(h, w)``; None: plain.

    ``uniform`` (None) is the official plain average. ``tapered`` weighs each cell by a
    separable triangle that peaks at the window centre and falls to ``1/n`` of it in the
    outermost cells, so a window's edge -- where its view is cut off -- counts least and
    neighbouring windows blend smoothly instead of switching at a seam. It never reaches
    0: cells only one window covers (at the image border) keep a defined average.
    """
    if kind not in WINDOW_WEIGHTS:
        raise ValueError(f"window weights must be one of {WINDOW_WEIGHTS}, got {kind!r}")
    if kind == "uniform":
        return None
    axes = [1 - (2 * (torch.arange(n) + 0.5) / n - 1).abs() for n in grid_hw]
    return axes[0][:, None] * axes[1][None, :]


class _GridAccumulator:
    """Weighted sum and weight of window-major crop logits on the stride-``o`` grid.

    Chunks are added as they come, so only the grid (not every window's logits) stays in
    memory. Windows are added in the same order as a one-shot average would, so uniform
    weights give exactly the same result whatever the chunking.
    """

    def __init__(
        self, grid_boxes: list[Box], num_images: int, grid_hw: tuple[int, int], weights: str
    ) -> None:
        self.grid_boxes = grid_boxes
        self.num_images = num_images
        self.grid_hw = grid_hw
        box = grid_boxes[0]
        self.weight = window_weight_map((box.height, box.width), weights)
        self.total: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    def add(self, logits: torch.Tensor, first: int) -> None:
        """Crop logits ``(n, C, h, w)`` of crops ``first .. first + n - 1``."""
        if self.total is None:
            self.total = logits.new_zeros((self.num_images, logits.shape[1], *self.grid_hw))
            self.counts = logits.new_zeros((1, 1, *self.grid_hw))
            if self.weight is not None:
                self.weight = self.weight.to(logits.device, logits.dtype)
        counts = cast(torch.Tensor, self.counts)
        for offset in range(logits.shape[0]):
            window, image = divmod(first + offset, self.num_images)
            box = self.grid_boxes[window]
            rows, cols = slice(box.top, box.bottom), slice(box.left, box.right)
            crop = logits[offset] if self.weight is None else logits[offset] * self.weight
            self.total[image, :, rows, cols] += crop
            if image == 0:
                counts[0, :, rows, cols] += 1 if self.weight is None else self.weight

    def result(self) -> torch.Tensor:
        return cast(torch.Tensor, self.total) / cast(torch.Tensor, self.counts)


def stitch_grid(
    logits: torch.Tensor, grid_boxes: list[Box], num_images: int, grid_hw: tuple[int, int]
) -> torch.Tensor:
    """Average window-major crop logits ``(windows * B, C, h, w)`` into ``(B, C, *grid_hw)``."""
    accumulator = _GridAccumulator(grid_boxes, num_images, grid_hw, "uniform")
    accumulator.add(logits, 0)
    return accumulator.result()


def sliding_window_grid(
    predict_fn: PredictFn,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    output_stride: int,
    *,
    batch_size: int | None = None,
    window_weights: str = "uniform",
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Average window logits on the stride-``o`` grid: ``(B, C, H/o, W/o)``.

    ``predict_fn`` maps ``(N, 3, h, w)`` crops to ``(N, C, h/o, w/o)`` logits. The crops of
    all windows and all images run in batches of ``batch_size`` crops (all at once when
    None), each added to the grid as soon as it is predicted, so memory holds the grid and
    one batch whatever the image size. ``window_weights`` (:func:`window_weight_map`) picks
    the plain or the tapered average; ``progress(done, total)`` is called after each batch.
    The image size, the stride and the (clamped) window must be multiples of
    ``output_stride`` so that every window lands on whole output cells.
    """
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch_size must be positive or None, got {batch_size}")
    boxes, grid_boxes = window_crops(images, window_hw, stride_hw, output_stride)
    num_images = images.shape[0]
    image_h, image_w = images.shape[-2:]
    box_h, box_w = boxes[0].height, boxes[0].width
    grid_hw = (image_h // output_stride, image_w // output_stride)
    accumulator = _GridAccumulator(grid_boxes, num_images, grid_hw, window_weights)
    num_crops = len(boxes) * num_images
    chunk = num_crops if batch_size is None else batch_size
    expected = (box_h // output_stride, box_w // output_stride)
    for start in range(0, num_crops, chunk):
        indices = range(start, min(start + chunk, num_crops))
        logits = predict_fn(cut_crops(images, boxes, indices))
        if logits.shape[0] != len(indices) or tuple(logits.shape[-2:]) != expected:
            raise ValueError(
                f"predict_fn returned shape {tuple(logits.shape[1:])} per crop for "
                f"{box_h}x{box_w} crops; expected spatial size {expected} "
                f"(output_stride={output_stride})"
            )
        accumulator.add(logits, start)
        if progress is not None:
            progress(indices.stop, num_crops)
    return accumulator.result()


def _padded_grid(
    predict_fn: PredictFn,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None,
    output_stride: int,
    align: int | None,
    window_weights: str,
    progress: ProgressFn | None,
) -> torch.Tensor:
    """The window average on the stride-``o`` grid, cut to the cells that overlap the image."""
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
    if (padded_h, padded_w) != (image_h, image_w):
        images = F.pad(images, (0, padded_w - image_w, 0, padded_h - image_h))
    grid = sliding_window_grid(
        predict_fn,
        images,
        (window_h, window_w),
        (stride_h, stride_w),
        output_stride,
        batch_size=batch_size,
        window_weights=window_weights,
        progress=progress,
    )
    cells_h, cells_w = math.ceil(image_h / output_stride), math.ceil(image_w / output_stride)
    return grid[..., :cells_h, :cells_w]


def _upsample(grid: torch.Tensor, output_stride: int) -> torch.Tensor:
    if output_stride == 1:
        return grid
    size = (grid.shape[-2] * output_stride, grid.shape[-1] * output_stride)
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)


def upsample_in_bands(
    grid: torch.Tensor,
    output_stride: int,
    image_hw: tuple[int, int],
    reduce: Callable[[torch.Tensor], torch.Tensor],
    band_cells: int = 16,
) -> torch.Tensor:
    """``reduce`` of the grid upsampled by ``o`` to ``image_hw``, computed in bands of rows.

    The full-resolution logits of a large photo (19 classes x 12 MP x 4 bytes: 0.9 GB)
    never exist at once: each band of ``band_cells`` grid rows is upsampled with one row
    of neighbours on each side (all bilinear upsampling by ``o`` reads), cropped, and
    reduced (for example to its argmax); the pieces are concatenated along the height.
    With an integer factor the interpolation weights do not depend on the band, so the
    result equals reducing the whole upsampled grid (up to float rounding: the kernel's
    vector path depends on the tensor size).
    """
    image_h, image_w = image_hw
    rows = grid.shape[-2]
    pieces = []
    for top in range(0, rows, band_cells):
        bottom = min(top + band_cells, rows)
        halo_top, halo_bottom = max(top - 1, 0), min(bottom + 1, rows)
        band = _upsample(grid[..., halo_top:halo_bottom, :], output_stride)
        first = (top - halo_top) * output_stride
        last = min(bottom * output_stride, image_h) - halo_top * output_stride
        pieces.append(reduce(band[..., first:last, :image_w]))
    return torch.cat(pieces, dim=-2)


def sliding_window_logits(
    predict_fn: PredictFn,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
    *,
    output_stride: int = 1,
    align: int | None = None,
    window_weights: str = "uniform",
) -> torch.Tensor:
    """Full-resolution logits ``(B, C, H, W)`` of images of any size by sliding windows.

    Window and stride must be multiples of ``align`` (default ``output_stride``; HRDA needs
    ``s * o``). The images are zero padded at the bottom/right to a multiple of ``align`` and
    to at least one window, the window logits are averaged on the stride-``o`` grid
    (:func:`sliding_window_grid`), the cells overlapping the image are upsampled bilinearly
    by ``o`` and the result is cropped to ``H x W``.
    """
    grid = _padded_grid(
        predict_fn,
        images,
        window_hw,
        stride_hw,
        batch_size,
        output_stride,
        align,
        window_weights,
        None,
    )
    image_h, image_w = images.shape[-2:]
    return _upsample(grid, output_stride)[..., :image_h, :image_w]


def predict_full_image(
    model: HRDAModel,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
    *,
    window_weights: str = "uniform",
) -> torch.Tensor:
    """HRDA test-time prediction: logits ``(B, C, H, W)`` at the input resolution.

    Each ``window_hw`` window (the HR context size) goes through
    :meth:`HRDAModel.predict_window`; ``batch_size`` windows (across windows and images) go
    per call, all at once when None. Window and stride must be multiples of ``s * o``.
    Overlapping windows are averaged plainly (``uniform``, the official rule) or with
    ``tapered`` weights (:func:`window_weight_map`).
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
        window_weights,
    )


def _stitch_windows(
    model: HRDAModel,
    per_window: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None,
    window_weights: str = "uniform",
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
        window_weights=window_weights,
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
    *,
    window_weights: str = "uniform",
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
        logits = predict_full_image(
            model, images, window_hw, stride_hw, batch_size, window_weights=window_weights
        )
        return logits, None

    def fused_and_attention(windows: torch.Tensor) -> torch.Tensor:
        output = model.predict_window(windows)
        attention = _on_grid_of(cast(torch.Tensor, output.attention), output.fused)
        return torch.cat([output.fused, attention], dim=1)

    stitched = _stitch_windows(
        model, fused_and_attention, images, window_hw, stride_hw, batch_size, window_weights
    )
    num_classes = model.network.num_classes
    return stitched[:, :num_classes], stitched[:, num_classes:]


def predict_full_image_branches(
    model: HRDAModel,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
    *,
    window_weights: str = "uniform",
) -> dict[str, torch.Tensor]:
    """Fused, LR-context-only and HR-detail-only logits ``(B, C, H, W)`` from one pass.

    One :meth:`HRDAModel.predict_window` call already computes all three, so evaluating the
    value of fusion costs one multi-resolution pass, not three. The ``context`` and
    ``detail`` logits equal :func:`predict_full_image` in ``lr_only`` / ``hr_only`` mode.
    Models trained without one branch (``lr_only``, ``hr_only``) give ``fused`` only.
    """
    if model.mode in ("lr_only", "hr_only"):
        fused = predict_full_image(
            model, images, window_hw, stride_hw, batch_size, window_weights=window_weights
        )
        return {"fused": fused}

    def all_branches(windows: torch.Tensor) -> torch.Tensor:
        output = model.predict_window(windows)
        context = _on_grid_of(cast(torch.Tensor, output.context), output.fused)
        return torch.cat([output.fused, context, cast(torch.Tensor, output.detail)], dim=1)

    stitched = _stitch_windows(
        model, all_branches, images, window_hw, stride_hw, batch_size, window_weights
    )
    fused, context, detail = stitched.chunk(3, dim=1)
    return {"fused": fused, "context": context, "detail": detail}


def predict_full_image_labels(
    model: HRDAModel,
    images: torch.Tensor,
    window_hw: tuple[int, int],
    stride_hw: tuple[int, int],
    batch_size: int | None = None,
    *,
    attention: bool = False,
    window_weights: str = "uniform",
    progress: ProgressFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Labels ``(B, H, W)`` of :func:`predict_full_image` in memory bounded by the grid.

    For large photos: windows are added to the stride-``o`` grid as they are predicted
    and the full-resolution logits are never built (:func:`upsample_in_bands` takes the
    argmax band by band), so memory holds the image, the grid and one band, not ``C``
    full-resolution channels. With ``attention`` (models that have one), also the scale
    attention of each pixel's predicted class (its only channel for a single map),
    ``(B, H, W)`` in ``[0, 1]``, as :func:`predict_full_image_with_attention` stitches it.
    ``progress(done, total)`` reports the windows done after each batch.
    """
    attention = attention and model.mode not in ("lr_only", "hr_only")
    num_classes = model.network.num_classes

    def per_window(windows: torch.Tensor) -> torch.Tensor:
        output = model.predict_window(windows)
        if not attention:
            return output.fused
        weights = _on_grid_of(cast(torch.Tensor, output.attention), output.fused)
        return torch.cat([output.fused, weights], dim=1)

    grid = _padded_grid(
        per_window,
        images,
        window_hw,
        stride_hw,
        batch_size,
        model.output_stride,
        model.scale * model.output_stride,
        window_weights,
        progress,
    )

    def labels_and_attention(band: torch.Tensor) -> torch.Tensor:
        labels = band[:, :num_classes].argmax(dim=1, keepdim=True)
        if not attention:
            return labels[:, 0]
        maps = band[:, num_classes:]
        picked = maps.gather(1, labels) if maps.shape[1] > 1 else maps
        return torch.cat([labels.to(band.dtype), picked], dim=1)

    image_hw = (images.shape[-2], images.shape[-1])
    out = upsample_in_bands(grid, model.output_stride, image_hw, labels_and_attention)
    if not attention:
        return out, None
    return out[:, 0].long(), out[:, 1]
