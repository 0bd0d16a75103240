"""Masked image consistency (MIC; Hoyer, Dai, Wang, Van Gool, CVPR 2023) for HRDA.

The student also trains on a *masked* copy of the step's target crop: colour-augmented
like the mixed images (mode ``separatetrgaug`` of the official code), then blanked in
random square blocks, it must predict the same pseudo-labels, with the same pixel weights,
that the EMA teacher gave the unmasked crop. Missing context forces the network to infer a
region from what surrounds it. The masked crop runs the full HRDA training pass (LR context,
a freshly drawn HR detail box, fused output), as the official HRDA encoder-decoder draws a
new detail box on every training call. Nothing changes at test time.

All random draws (augmentation, mask cells, detail boxes) come from the caller's CPU
generator, so a resumed run repeats them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hrda_kedro.hrda.config import Config, require, require_positive_pair, setting
from hrda_kedro.hrda.crops import sample_box
from hrda_kedro.hrda.losses import hrda_loss
from hrda_kedro.hrda.training.student import Student
from hrda_kedro.hrda.uda.augment import strong_augment


@dataclass
class MaskingConfig(Config):
    """MIC's settings (``self_training.mic``); the defaults are the official
    ``gtaHR2csHR_mic_hrda`` ones."""

    enabled: bool = False
    mask_block_size: int = 64
    """Mask cell side in pixels, for images of ``mask_block_reference_size``."""
    mask_block_reference_size: tuple[int, int] | None = (1024, 2048)
    """None: ``mask_block_size`` is in pixels as given."""
    mask_ratio: float = 0.7
    """Probability that a cell is masked."""
    loss_weight: float = setting(1.0, ge=0.0, key="lambda")
    """Weight of the masked loss in the step's loss."""
    augment: bool = True
    """Colour jitter and blur before masking (official ``separatetrgaug``)."""

    def validate(self) -> None:
        require(
            self.mask_block_size >= 1,
            "mask_block_size",
            f"expected >= 1 pixel, got {self.mask_block_size}",
        )
        if self.mask_block_reference_size is not None:
            require_positive_pair(self.mask_block_reference_size, "mask_block_reference_size")
        require(
            0.0 <= self.mask_ratio < 1.0,
            "mask_ratio",
            f"expected 0 <= ratio < 1 (the share of masked blocks), got {self.mask_ratio}",
        )

    def block_size_for(self, image_hw: tuple[int, int]) -> int:
        """The mask block side for crops of an image of ``image_hw``."""
        if self.mask_block_reference_size is None:
            return self.mask_block_size
        return scale_block_size(image_hw, self.mask_block_size, self.mask_block_reference_size)


def scale_block_size(
    image_hw: tuple[int, int], block_size: int, reference_hw: tuple[int, int]
) -> int:
    """The block side for an image of ``image_hw`` when ``block_size`` is given for images of
    ``reference_hw``: scaled with the square root of the area ratio, rounded half up, at
    least 1, so the blocks cover the same share of a scene at any resolution (64 px on
    Cityscapes' 2048x1024 is 16 px on the embedded benchmark's 512x256).
    """
    if min(*image_hw, block_size, *reference_hw) <= 0:
        raise ValueError(
            f"sizes must be positive, got image_hw={image_hw}, block_size={block_size}, "
            f"reference_hw={reference_hw}"
        )
    ratio = math.sqrt(image_hw[0] * image_hw[1] / (reference_hw[0] * reference_hw[1]))
    return max(1, math.floor(block_size * ratio + 0.5))


def block_mask(
    crop_hw: tuple[int, int],
    block_sizes: list[int],
    ratio: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Keep-mask ``float32 (B, 1, H, W)`` of 0/1 for ``B = len(block_sizes)`` crops, drawn on
    the host.

    Per crop, a grid of ``round(H / b) x round(W / b)`` cells (Python's rounding, as the
    official code), each kept where its uniform draw exceeds ``ratio``, resized to the crop
    with nearest-neighbour interpolation (so when ``b`` does not divide a side, the cells
    are stretched evenly, as in the official code).
    """
    height, width = crop_hw
    masks = []
    for block in block_sizes:
        cells = (max(1, round(height / block)), max(1, round(width / block)))
        keep = (torch.rand(1, 1, *cells, generator=generator) > ratio).float()
        masks.append(F.interpolate(keep, size=(height, width), mode="nearest"))
    return torch.cat(masks)


def masked_consistency_loss(
    student: Student,
    target_images: torch.Tensor,
    pseudo_labels: torch.Tensor,
    pseudo_weights: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    *,
    config: MaskingConfig,
    generator: torch.Generator,
    augment: Callable[..., torch.Tensor] = strong_augment,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lambda * L_HRDA(student(mask(aug(x_T))), p_T, q_T)`` and its detached terms
    (``mic``: the weighted loss, ``mic_fused``, ``mic_detail``).

    ``target_images`` are the normalised HR target crops ``(B, 3, H, W)`` the teacher
    labelled; ``pseudo_labels`` / ``pseudo_weights`` ``(B, H, W)`` its labels and weights
    (margins already zeroed); ``image_sizes`` the full size of each crop's image (the mask
    block scales with it). The teacher is not involved: gradients reach only the student.
    Masked pixels are 0, the normalised mean colour. ``lambda`` scales the whole HRDA loss
    (the official code scales only its fused term; identical at the default lambda = 1).
    """
    batch, _, height, width = target_images.shape
    if len(image_sizes) != batch:
        raise ValueError(f"expected {batch} image sizes, got {len(image_sizes)}")
    # One jitter order and blur sigma for the batch, as the official module's one call.
    images = (
        augment(target_images, generator, shared_draws=True) if config.augment else target_images
    )
    block_sizes = [config.block_size_for(hw) for hw in image_sizes]
    keep = block_mask((height, width), block_sizes, config.mask_ratio, generator)
    images = images * keep.to(device=images.device, dtype=images.dtype)
    boxes = [
        sample_box((height, width), student.detail_hw, student.align, generator)
        for _ in range(batch)
    ]
    output = student(images, boxes)
    loss, terms = hrda_loss(output, pseudo_labels, boxes, pseudo_weights, student.hr_loss_weight)
    weighted = config.loss_weight * loss
    named = {f"mic_{k}": v for k, v in terms.items()}
    named["mic"] = weighted.detach()
    return weighted, named
