"""Full-image inference: windows over photos of any size, stitched and upsampled once.

Window logits are averaged on the network's stride-``o`` output grid
(:mod:`hrda_kedro.hrda.windows`) and upsampled to pixels once at the end, so a
translation-equivariant network gives exactly its whole-image output (per-window upsampling
would blur each window edge differently).

Images of any size are handled by zero padding at the bottom and right (zero is the ImageNet
mean colour after normalisation) up to a multiple of the alignment and at least one window;
only the output cells that overlap the real image are upsampled, then the result is cropped
to the input size, so the padding never leaks into the interpolation.

The HRDA predictions run each context-size window through
:meth:`HRDAModel.predict_window <hrda_kedro.hrda.model.HRDAModel.predict_window>` and stitch
the channels an ``Outputs`` function picks from its :class:`MultiResOutput`; the public
functions differ only in that choice and in how they split the stitched channels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hrda_kedro.hrda.crops import check_hw
from hrda_kedro.hrda.model import HRDAModel, MultiResOutput
from hrda_kedro.hrda.model_config import SlidingWindows
from hrda_kedro.hrda.windows import ProgressFn, sliding_window_grid

logger = logging.getLogger(__name__)

Outputs = Callable[[MultiResOutput], list[torch.Tensor]]


def _padded(images: torch.Tensor, windows: SlidingWindows, align: int) -> torch.Tensor:
    """``images`` zero padded at the bottom/right to a multiple of ``align`` and one window."""
    window_hw, stride_hw = windows.window_hw, windows.stride_hw
    window_h, window_w = check_hw("window_hw", window_hw)
    stride_h, stride_w = check_hw("stride_hw", stride_hw)
    if any(v % align for v in (window_h, window_w, stride_h, stride_w)):
        raise ValueError(
            f"window_hw {window_hw} and stride_hw {stride_hw} must be multiples of align={align}"
        )
    image_h, image_w = images.shape[-2:]
    padded_h = max(math.ceil(image_h / align) * align, window_h)
    padded_w = max(math.ceil(image_w / align) * align, window_w)
    if (padded_h, padded_w) == (image_h, image_w):
        return images
    return F.pad(images, (0, padded_w - image_w, 0, padded_h - image_h))


def _model_grid(
    model: HRDAModel,
    outputs: Outputs,
    images: torch.Tensor,
    windows: SlidingWindows,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """``outputs`` of every context-size window, stacked along the channels, averaged on
    the stride-``o`` grid and cut to the cells that overlap the image.

    Window and stride must be multiples of ``s * o``, so that every window's LR and HR
    grids are whole (:meth:`HRDAModel.predict_window`).
    """

    def per_window(crops: torch.Tensor) -> torch.Tensor:
        return torch.cat(outputs(model.predict_window(crops, reuse_identical_crops=True)), dim=1)

    stride = model.output_stride
    padded = _padded(images, windows, model.scale * stride)
    grid = sliding_window_grid(
        per_window,
        padded,
        windows.window_hw,
        windows.stride_hw,
        stride,
        batch_size=windows.batch_size,
        window_weights=windows.weights,
        progress=progress,
    )
    image_h, image_w = images.shape[-2:]
    return grid[..., : math.ceil(image_h / stride), : math.ceil(image_w / stride)]


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


def _stitched(
    model: HRDAModel, outputs: Outputs, images: torch.Tensor, windows: SlidingWindows
) -> torch.Tensor:
    """:func:`_model_grid` upsampled by ``o`` and cropped to the images' size."""
    grid = _model_grid(model, outputs, images, windows)
    image_h, image_w = images.shape[-2:]
    return _upsample(grid, model.output_stride)[..., :image_h, :image_w]


def _on_grid_of(tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``tensor`` bilinearly resized to ``reference``'s grid (as in the fusion)."""
    resized = F.interpolate(tensor, size=reference.shape[-2:], mode="bilinear", align_corners=False)
    return resized.to(reference.dtype)


def _fused(output: MultiResOutput) -> list[torch.Tensor]:
    """The fused logits alone."""
    return [output.fused]


def _fused_and_attention(output: MultiResOutput) -> list[torch.Tensor]:
    """The fused logits and, where the model has one, the attention on their grid."""
    if output.attention is None:
        return [output.fused]
    return [output.fused, _on_grid_of(output.attention, output.fused)]


def _all_branches(output: MultiResOutput) -> list[torch.Tensor]:
    """Fused, context and detail logits; the fused ones alone for a single-branch model."""
    if output.context is None or output.detail is None:
        return [output.fused]
    return [output.fused, _on_grid_of(output.context, output.fused), output.detail]


def _all_branches_and_attention(output: MultiResOutput) -> list[torch.Tensor]:
    """:func:`_all_branches` and, where the model has one, the attention on their grid."""
    branches = _all_branches(output)
    if output.attention is None or len(branches) == 1:
        return branches
    return [*branches, _on_grid_of(output.attention, output.fused)]


def predict_full_image(
    model: HRDAModel,
    images: torch.Tensor,
    windows: SlidingWindows,
) -> torch.Tensor:
    """HRDA test-time prediction: logits ``(B, C, H, W)`` at the input resolution.

    Each of ``windows`` (:class:`SlidingWindows`) goes through
    :meth:`HRDAModel.predict_window`.
    """
    logger.debug(
        "sliding-window prediction of %s images with windows %s, stride %s",
        tuple(images.shape),
        windows.window_hw,
        windows.stride_hw,
    )
    return _stitched(model, _fused, images, windows)


def predict_full_image_with_attention(
    model: HRDAModel,
    images: torch.Tensor,
    windows: SlidingWindows,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`predict_full_image`'s logits and HRDA's scale attention, in one pass.

    Each window's attention (:meth:`HRDAModel.predict_window`, on its LR grid) is upsampled
    to the fused logits' grid as in the fusion and stitched with them (same windows,
    averaged where they overlap, upsampled bilinearly): ``(B, A, H, W)`` in ``[0, 1]``,
    the weight the detail branch got at every pixel; ``A`` is ``num_classes`` for
    class-wise attention, else 1. The logits are exactly :func:`predict_full_image`'s.
    Models without an attention (``lr_only``, ``hr_only``) give None.
    """
    stitched = _stitched(model, _fused_and_attention, images, windows)
    num_classes = model.network.num_classes
    attention = stitched[:, num_classes:] if stitched.shape[1] > num_classes else None
    return stitched[:, :num_classes], attention


def predict_full_image_branches(
    model: HRDAModel,
    images: torch.Tensor,
    windows: SlidingWindows,
    *,
    attention: bool = False,
) -> dict[str, torch.Tensor]:
    """Fused, LR-context-only and HR-detail-only logits ``(B, C, H, W)`` from one pass.

    One :meth:`HRDAModel.predict_window` call already computes all three, so evaluating the
    value of fusion costs one multi-resolution pass, not three. The ``context`` and
    ``detail`` logits equal :func:`predict_full_image` in ``lr_only`` / ``hr_only`` mode.
    Models trained without one branch (``lr_only``, ``hr_only``) give ``fused`` only. With
    ``attention``, models that have one also give it, stitched as
    :func:`predict_full_image_with_attention` does (``(B, A, H, W)``), from the same pass.
    """
    outputs = _all_branches_and_attention if attention else _all_branches
    stitched = _stitched(model, outputs, images, windows)
    num_classes = model.network.num_classes
    names = ("fused", "context", "detail")
    logits = stitched[:, : len(names) * num_classes]
    branches = dict(zip(names, logits.split(num_classes, dim=1), strict=False))
    if stitched.shape[1] > logits.shape[1]:
        branches["attention"] = stitched[:, logits.shape[1] :]
    return branches


def predict_full_image_labels(
    model: HRDAModel,
    images: torch.Tensor,
    windows: SlidingWindows,
    *,
    attention: bool = False,
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
    outputs = _fused_and_attention if attention else _fused
    grid = _model_grid(model, outputs, images, windows, progress)

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
