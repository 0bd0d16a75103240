"""HRDA's multi-resolution model: a shared network, scale attention and the fusion.

The fusion is the paper's (and the official ``HRDAHead``'s) formula
``y_F = up((1 - a) * y_c, s) + up(a, s) * y_d``: the attention weights the LR context
logits on the LR grid, then both terms are upsampled by ``s`` to the HR grid at the
network's output stride ``o``. In training, ``a`` is zero outside the detail box (masked
on the LR grid) and ``y_d`` is zero-padded; the fused logits outside the box are then
taken as ``up(y_c, s)`` bit for bit, where bilinear upsampling would otherwise leak
attention into a band of HR cells beyond the box edge (see
:meth:`HRDAModel._fuse_in_boxes`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.networks.base import SegmentationNetwork
from hrda_kedro.hrda.windows import (
    cut_crops,
    distinct_crops,
    sliding_window_grid,
    stitch_grid,
    window_crops,
)

MODES = ("hrda", "lr_only", "hr_only", "fixed_attention")


@dataclass
class MultiResOutput:
    """What one multi-resolution pass produced; absent branches are None.

    - ``fused``: logits on the HR grid at stride ``o``; in ``hr_only`` training it is the
      detail prediction (the detail box grid), since nothing covers the rest of the crop.
    - ``context``: LR context logits ``(B, C, h_c/o, w_c/o)``.
    - ``detail``: detail-crop logits in training; in :meth:`HRDAModel.predict_window` the
      stitched HR sliding-window logits of the whole window.
    - ``attention``: scale attention after the sigmoid, on the LR grid, *unmasked*.
    - ``context_features``: encoder features of the LR context (for the feature distance).
    """

    fused: torch.Tensor
    context: torch.Tensor | None
    detail: torch.Tensor | None
    attention: torch.Tensor | None
    context_features: list[torch.Tensor] | None


def _paste(tensor: torch.Tensor, boxes: list[Box], out_hw: tuple[int, int]) -> torch.Tensor:
    """Zero-pad each sample of ``tensor`` into an ``out_hw`` frame at its own box.

    One pad per sample (batches are a handful of images) avoids building box tensors on the
    device, which would cost a host-to-device copy and a sync on every step.
    """
    out_h, out_w = out_hw
    return torch.cat(
        [
            F.pad(tensor[i : i + 1], (box.left, out_w - box.right, box.top, out_h - box.bottom))
            for i, box in enumerate(boxes)
        ]
    )


class HRDAModel(nn.Module):
    """Wraps a :class:`SegmentationNetwork` into HRDA's context/detail model.

    ``mode`` selects the ablation: ``hrda`` (learned attention), ``lr_only`` (context
    branch only), ``hr_only`` (detail branch only) or ``fixed_attention`` (attention is the
    constant ``fixed_attention`` everywhere).

    ``hr_slide_overlapping`` (the official default) slides the HR detail windows over a
    whole window with a stride of half their size; False tiles them edge to edge (the
    official ``nooverlap`` ablation): 4 instead of 9 crops per context window, less work
    for the self-training teacher and for test inference, each HR cell seen by one crop.

    ``fixed_attention`` and ``hr_window_batch`` are taken as given: they come from
    :class:`~hrda_kedro.hrda.model_config.HRDAConfig` and ``InferenceConfig``, which check
    their ranges once, on construction. The model checks only its geometry against the
    network it wraps (the detail size against the output stride), which no config knows.
    """

    def __init__(
        self,
        network: SegmentationNetwork,
        scale: int = 2,
        detail_hw: tuple[int, int] = (512, 512),
        *,
        mode: str = "hrda",
        fixed_attention: float = 0.5,
        hr_window_batch: int | None = None,
        hr_slide_overlapping: bool = True,
    ) -> None:
        super().__init__()
        if operator.index(scale) < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        stride = network.output_stride
        if len(detail_hw) != 2 or any(v <= 0 or v % stride for v in detail_hw):
            raise ValueError(
                f"detail_hw must be two positive multiples of the output stride {stride}, "
                f"got {detail_hw!r}"
            )
        self.network = network
        self.scale = int(scale)
        self.detail_hw = (int(detail_hw[0]), int(detail_hw[1]))
        self.mode = mode
        self.fixed_attention = float(fixed_attention)
        self.hr_window_batch = hr_window_batch
        self.hr_slide_overlapping = bool(hr_slide_overlapping)

    @property
    def mode(self) -> str:
        """The ablation mode; may be switched after construction (e.g. to evaluate branches)."""
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._mode = mode

    @property
    def output_stride(self) -> int:
        """Output stride ``o`` of the wrapped network."""
        return self.network.output_stride

    def forward(self, context_hr: torch.Tensor, detail_boxes: list[Box]) -> MultiResOutput:
        """Training pass, so that module hooks and wrappers see it; see :meth:`forward_train`."""
        return self.forward_train(context_hr, detail_boxes)

    def _check_hr_size(self, images: torch.Tensor, what: str) -> tuple[int, int]:
        """HR sizes must be multiples of ``s * o`` for the LR output grid to be whole."""
        if images.dim() != 4:
            raise ValueError(f"{what} must be (B, 3, H, W), got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        align = self.scale * self.output_stride
        if height % align or width % align:
            raise ValueError(
                f"{what} size {height}x{width} must be a multiple of scale * output_stride = {align}"
            )
        return height, width

    def _downscale(self, images_hr: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return images_hr
        height, width = images_hr.shape[-2:]
        size = (height // self.scale, width // self.scale)
        return F.interpolate(images_hr, size=size, mode="bilinear", align_corners=False)

    def _upscale(self, logits: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return logits
        height, width = logits.shape[-2:]
        size = (height * self.scale, width * self.scale)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def _context_pass(
        self, images_hr: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """LR features, LR logits and (unless ``lr_only``) the sigmoid attention."""
        features = self.network.extract(self._downscale(images_hr))
        return (features, *self._context_heads(features))

    def _context_heads(
        self, features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.network.segment(features)
        if self.mode == "lr_only":
            return logits, None
        if self.mode == "fixed_attention":
            attention = torch.full_like(logits[:, :1], self.fixed_attention)
        else:
            attention = torch.sigmoid(self.network.attend(features))
        return logits, attention

    def _encode_both(
        self, context_lr: torch.Tensor, details_hr: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encoder features of the LR context and the HR detail crops.

        HRDA's recipe gives both the same size (512 x 512); then, for an encoder that keeps
        samples apart, one call on the stacked batch gives the same features with fewer,
        larger kernels. The heads still run per branch, so BatchNorm statistics stay per
        branch as in the official two-pass implementation.
        """
        same_size = context_lr.shape[-2:] == details_hr.shape[-2:]
        if same_size and (self.network.batch_independent_encoder or not self.network.training):
            features = self.network.extract(torch.cat([context_lr, details_hr]))
            batch = context_lr.shape[0]
            return [f[:batch] for f in features], [f[batch:] for f in features]
        return self.network.extract(context_lr), self.network.extract(details_hr)

    def _check_boxes(self, boxes: list[Box], batch: int, hw: tuple[int, int]) -> None:
        if len(boxes) != batch:
            raise ValueError(f"expected one detail box per sample ({batch}), got {len(boxes)}")
        for box in boxes:
            if (box.height, box.width) != self.detail_hw:
                raise ValueError(f"detail box {box} does not have detail_hw {self.detail_hw}")
            if box.bottom > hw[0] or box.right > hw[1]:
                raise ValueError(f"detail box {box} lies outside the {hw[0]}x{hw[1]} context crop")
            align = self.scale * self.output_stride
            if box.top % align or box.left % align:
                raise ValueError(
                    f"detail box {box} must be aligned to scale * output_stride = {align} "
                    "(whole cells of the LR grid)"
                )

    def forward_train(self, context_hr: torch.Tensor, detail_boxes: list[Box]) -> MultiResOutput:
        """Fused logits of HR context crops ``(B, 3, s*h_c, s*w_c)`` and per-sample detail boxes.

        The boxes are in the context crop's HR coordinates, one per sample. The context
        branch runs once on the downscaled batch, the detail branch once on the stacked
        detail crops; their encoder passes share one call where :meth:`_encode_both` may.
        """
        hw = self._check_hr_size(context_hr, "context_hr")
        self._check_boxes(detail_boxes, context_hr.shape[0], hw)
        if self.mode == "lr_only":
            features, context, attention = self._context_pass(context_hr)
        else:
            details_hr = torch.stack(
                [box.crop(context_hr[i]) for i, box in enumerate(detail_boxes)]
            )
            if self.mode == "hr_only":
                detail = self.network(details_hr)
                return MultiResOutput(detail, None, detail, None, None)
            features, detail_features = self._encode_both(self._downscale(context_hr), details_hr)
            detail = self.network.segment(detail_features)
            context, attention = self._context_heads(features)
        if attention is None:
            return MultiResOutput(self._upscale(context), context, None, None, features)
        fused = self._fuse_in_boxes(context, attention, detail, detail_boxes)
        return MultiResOutput(fused, context, detail, attention, features)

    def _fuse(
        self, context: torch.Tensor, attention: torch.Tensor, detail_hr: torch.Tensor
    ) -> torch.Tensor:
        """The paper's fusion ``up((1 - a) * y_c, s) + up(a, s) * y_d``.

        ``context`` and ``attention`` lie on the LR grid, ``detail_hr`` on the HR grid. The
        product with the attention is taken on the LR grid before upsampling, as in the
        official ``HRDAHead``; weighting after upsampling gives other logits wherever the
        attention varies in space.
        """
        return self._upscale((1 - attention) * context) + self._upscale(attention) * detail_hr

    def _fuse_in_boxes(
        self,
        context: torch.Tensor,
        attention: torch.Tensor,
        detail: torch.Tensor,
        boxes: list[Box],
    ) -> torch.Tensor:
        """Training fusion: :meth:`_fuse` inside each detail box, ``up(y_c, s)`` outside it.

        As in the official code, the attention is masked to the box on the LR grid and the
        detail logits are zero-padded to the HR grid, so inside the box the fused logits are
        the official ones. Outside the box there is no detail prediction; there the paper
        states ``y_F = up(y_c)``, which the official bilinear upsampling of the masked
        attention misses in a band along the box edge (one HR cell for ``s = 2``), where
        it damps the context logits with no detail logits to make up for it. Taking
        ``up(y_c)`` outside keeps that region a pure LR-branch prediction.
        """
        s, stride = self.scale, self.output_stride
        lr_hw = context.shape[-2:]
        hr_hw = (lr_hw[0] * s, lr_hw[1] * s)
        # Boxes are aligned to s * o, so each covers whole LR cells.
        lr_box_hw = (detail.shape[-2] // s, detail.shape[-1] // s)
        lr_boxes = [box.scaled_down(s * stride) for box in boxes]
        lr_mask = _paste(context.new_ones((len(boxes), 1, *lr_box_hw)), lr_boxes, lr_hw)
        padded_detail = _paste(detail, [box.scaled_down(stride) for box in boxes], hr_hw)
        inside = self._fuse(context, attention * lr_mask, padded_detail)
        hr_mask = lr_mask.bool().repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)
        return torch.where(hr_mask, inside, self._upscale(context))

    @property
    def detail_stride(self) -> tuple[int, int]:
        """Stride of the detail crops that slide over a test window (HR pixels): half the
        detail size, a multiple of ``o`` (the whole detail size without
        ``hr_slide_overlapping``). With :attr:`detail_hw` it says where the detail branch
        looks: ``sliding_window_boxes(window_hw, model.detail_hw, model.detail_stride)``."""
        if not self.hr_slide_overlapping:
            return self.detail_hw
        stride = self.output_stride
        return cast(
            tuple[int, int], tuple(max(stride, v // 2 // stride * stride) for v in self.detail_hw)
        )

    def _shared_window_pass(
        self, window_hr: torch.Tensor, reuse_identical_crops: bool, crops_per_call: int | None
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None, torch.Tensor] | None:
        """Features, context logits, attention and stitched detail logits from one encoder call.

        With HRDA's recipe the LR window (``H/s x W/s``) and the HR sliding crops have the
        same size, so -- as in the training pass -- one encoder call on the LR windows and
        all HR crops stacked gives the same features as separate calls, with fewer and
        larger kernels. None when that does not hold (other sizes, chunks of
        ``crops_per_call`` that bound memory, single-branch modes, or an encoder that mixes
        samples in training mode); the caller then runs the branches apart.
        """
        lr_hw = tuple(v // self.scale for v in window_hr.shape[-2:])
        if (
            self.mode not in ("hrda", "fixed_attention")
            or crops_per_call is not None
            or lr_hw != self.detail_hw
            or (self.network.training and not self.network.batch_independent_encoder)
        ):
            return None
        boxes, grid_boxes = window_crops(
            window_hr, self.detail_hw, self.detail_stride, self.output_stride
        )
        num_windows = int(window_hr.shape[0])  # a plain int also when traced (ONNX export)
        crops = cut_crops(window_hr, boxes, range(len(boxes) * num_windows))
        inverse = None
        if reuse_identical_crops and not self.network.training:
            first, inverse = distinct_crops(crops)
            crops = crops[first]
        features = self.network.extract(torch.cat([self._downscale(window_hr), crops]))
        context_features = [f[:num_windows] for f in features]
        crop_logits = self.network.segment([f[num_windows:] for f in features])
        if inverse is not None:
            crop_logits = crop_logits[inverse]
        grid_hw = tuple(v // self.output_stride for v in window_hr.shape[-2:])
        detail = stitch_grid(crop_logits, grid_boxes, num_windows, cast(tuple[int, int], grid_hw))
        context, attention = self._context_heads(context_features)
        return context_features, context, attention, detail

    def predict_window(
        self,
        window_hr: torch.Tensor,
        *,
        reuse_identical_crops: bool = False,
        max_crops_per_call: int | None = None,
    ) -> MultiResOutput:
        """Prediction of whole HR windows ``(N, 3, H, W)``, used for pseudo-labels and tests.

        The LR pass covers the window; the HR pass slides detail-size windows with a stride
        of half a window (rounded down to a multiple of ``o``; a whole window without
        ``hr_slide_overlapping``) over it, all crops of all windows in one batch or chunks
        of ``hr_window_batch``; overlaps are averaged and fused with the unmasked attention. A window smaller than the detail size runs as a
        single HR crop of its own size.

        ``reuse_identical_crops`` (full-image inference, whose overlapping windows share
        detail crops): in eval mode, each distinct HR crop goes through the network once
        (:func:`~hrda_kedro.hrda.windows.distinct_crops`); the same logits, fewer samples.
        The teacher's per-step pass (no overlaps; no host synchronisation wanted) and the
        ONNX export (a static graph) leave it off.

        ``max_crops_per_call`` caps the HR crops per network call below ``hr_window_batch``
        (the teacher's per-step pass caps them at the student's batch, so that making
        pseudo-labels never needs more memory than training does); chunks give the same
        logits as one call, since samples do not interact in eval mode.
        """
        self._check_hr_size(window_hr, "window_hr")
        crops_per_call = _smaller(self.hr_window_batch, max_crops_per_call)
        shared = self._shared_window_pass(window_hr, reuse_identical_crops, crops_per_call)
        if shared is not None:
            features, context, attention, detail = shared
        else:
            if self.mode != "lr_only":
                detail = sliding_window_grid(
                    self.network,
                    window_hr,
                    self.detail_hw,
                    self.detail_stride,
                    self.output_stride,
                    batch_size=crops_per_call,
                )
            if self.mode == "hr_only":
                return MultiResOutput(detail, None, detail, None, None)
            features, context, attention = self._context_pass(window_hr)
        if attention is None:
            return MultiResOutput(self._upscale(context), context, None, None, features)
        fused = self._fuse(context, attention, detail)
        return MultiResOutput(fused, context, detail, attention, features)


def _smaller(a: int | None, b: int | None) -> int | None:
    """The smaller of two optional limits (None: no limit)."""
    return b if a is None else a if b is None else min(a, b)
