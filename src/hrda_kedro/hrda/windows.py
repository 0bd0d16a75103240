"""Sliding windows on the network's output grid: which windows, their crops, their average.

The geometry and the stitching that both the model (:meth:`HRDAModel.predict_window
<hrda_kedro.hrda.model.HRDAModel.predict_window>`, the HR detail windows inside one context
window) and full-image inference (:mod:`hrda_kedro.hrda.inference`, context windows over a
whole photo) use. Window logits are averaged on the stride-``o`` grid, where a
translation-equivariant network gives exactly its whole-image output.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import cast

import torch

from hrda_kedro.hrda.crops import Box, check_hw

PredictFn = Callable[[torch.Tensor], torch.Tensor]
ProgressFn = Callable[[int, int], None]


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
    window on that axis); callers that need full-size windows pad first, as full-image
    inference (:mod:`hrda_kedro.hrda.inference`) does.
    """
    image_h, image_w = check_hw("image_hw", image_hw)
    window_h, window_w = check_hw("window_hw", window_hw)
    stride_h, stride_w = check_hw("stride_hw", stride_hw)
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
    _, _, image_h, image_w = static_shape(images)
    boxes = sliding_window_boxes((image_h, image_w), window_hw, stride_hw)
    box_h, box_w = boxes[0].height, boxes[0].width
    if any(v % output_stride for v in (image_h, image_w, box_h, box_w, *stride_hw)):
        raise ValueError(
            f"image size {image_h}x{image_w}, window {box_h}x{box_w} and stride {stride_hw} "
            f"must be multiples of output_stride={output_stride}"
        )
    return boxes, [box.scaled_down(output_stride) for box in boxes]


def static_shape(images: torch.Tensor) -> tuple[int, ...]:
    """``images.shape`` as Python ints. The ONNX exporter's tracer hands sizes out as
    tensors; the windows of a fixed image size are a fixed set, so the graph records them
    as constants (the exporter's TracerWarning says so, and is expected)."""
    return tuple(int(size) for size in images.shape)


def cut_crops(images: torch.Tensor, boxes: list[Box], indices: range) -> torch.Tensor:
    """Crops ``indices`` of all windows of all images, window-major: ``(len(indices), 3, h, w)``."""
    num_images = static_shape(images)[0]
    return torch.stack([boxes[i // num_images].crop(images[i % num_images]) for i in indices])


_SAME_SIZE_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def distinct_crops(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the distinct crops among ``crops`` ``(N, ...)`` and, per crop, the
    position of its copy among them: ``crops[first][inverse]`` equals ``crops``.

    Overlapping windows cut the same HR crop more than once (the three context windows of a
    512x256 image cut 27 detail crops, 21 of them distinct). A crop's key is the integer
    sum of its values' bit patterns (exact, so equal crops get equal keys, which a float
    sum does not guarantee); crops with equal keys are compared in full, so the grouping
    is exact. A network whose samples do not interact (eval mode) then predicts each
    distinct crop once. The keys are read on the host: one synchronisation per call.
    """
    flat = crops.flatten(1)
    bits = flat.view(_SAME_SIZE_INT[flat.element_size()])
    first: list[int] = []
    inverse: list[int] = []
    slots_by_key: dict[int, list[int]] = {}
    for index, key in enumerate(bits.sum(dim=1, dtype=torch.int64).tolist()):
        slots = slots_by_key.setdefault(key, [])
        slot = next((j for j in slots if torch.equal(flat[first[j]], flat[index])), None)
        if slot is None:
            slot = len(first)
            first.append(index)
            slots.append(slot)
        inverse.append(slot)
    as_tensor = partial(torch.tensor, dtype=torch.long, device=crops.device)
    return as_tensor(first), as_tensor(inverse)


WINDOW_WEIGHTS = ("uniform", "tapered")


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
    num_images, _, image_h, image_w = static_shape(images)
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
