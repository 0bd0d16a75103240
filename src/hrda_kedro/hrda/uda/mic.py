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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hrda_kedro.hrda.crops import Box, sample_box
from hrda_kedro.hrda.losses import hrda_loss
from hrda_kedro.hrda.model import MultiResOutput
from hrda_kedro.hrda.uda.augment import strong_augment


@dataclass(frozen=True)
class MaskingConfig:
    """MIC's settings; the defaults are the official ``gtaHR2csHR_mic_hrda`` ones."""

    block_size: int = 64  # mask cell side in pixels, for images of reference_hw
    reference_hw: tuple[int, int] | None = (1024, 2048)  # None: block_size is in pixels
    ratio: float = 0.7  # probability that a cell is masked
    loss_weight: float = 1.0  # lambda, weight of the masked loss in the step's loss
    augment: bool = True  # colour jitter and blur before masking (``separatetrgaug``)

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        if self.loss_weight < 0.0:
            raise ValueError(f"loss_weight must be >= 0, got {self.loss_weight}")

    def block_size_for(self, image_hw: tuple[int, int]) -> int:
        """The mask block side for crops of an image of ``image_hw``."""
        if self.reference_hw is None:
            return self.block_size
        return scale_block_size(image_hw, self.block_size, self.reference_hw)


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
    forward_train: Callable[[torch.Tensor, list[Box]], MultiResOutput],
    target_images: torch.Tensor,
    pseudo_labels: torch.Tensor,
    pseudo_weights: torch.Tensor,
    *,
    config: MaskingConfig,
    image_sizes: list[tuple[int, int]],
    detail_hw: tuple[int, int],
    align: int,
    hr_loss_weight: float,
    generator: torch.Generator,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] = strong_augment,
    autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lambda * L_HRDA(student(mask(aug(x_T))), p_T, q_T)`` and its detached terms.

    ``target_images`` are the normalised HR target crops ``(B, 3, H, W)`` the teacher
    labelled; ``pseudo_labels`` / ``pseudo_weights`` ``(B, H, W)`` its labels and weights
    (margins already zeroed); ``image_sizes`` the full size of each crop's image (the mask
    block scales with it). The teacher is
    not involved: gradients reach only the student through ``forward_train``. Masked
    pixels are 0, the normalised mean colour. ``lambda`` scales the whole HRDA loss (the
    official code scales only its fused term; identical at the default lambda = 1).
    """
    batch, _, height, width = target_images.shape
    if len(image_sizes) != batch:
        raise ValueError(f"expected {batch} image sizes, got {len(image_sizes)}")
    images = augment(target_images, generator) if config.augment else target_images
    block_sizes = [config.block_size_for(hw) for hw in image_sizes]
    keep = block_mask((height, width), block_sizes, config.ratio, generator)
    images = images * keep.to(device=images.device, dtype=images.dtype)
    boxes = [sample_box((height, width), detail_hw, align, generator) for _ in range(batch)]
    with autocast():
        output = forward_train(images, boxes)
    loss, terms = hrda_loss(output, pseudo_labels, boxes, pseudo_weights, hr_loss_weight)
    return config.loss_weight * loss, terms
