"""Strong photometric augmentation of the mixed images (DACS): colour jitter and blur.

The student sees strongly augmented mixed images while the teacher labelled the clean
target image, a consistency constraint that makes self-training more robust.

The official code applies colour jitter when ``uniform > 0.2``, i.e. with probability
0.8 despite the parameter being called "probability 0.2"; here ``jitter_p`` is the real
probability (0.8). Each image of the batch gets its own draws (official: one per batch).
All random numbers come from the given generator, a fixed number per image whether or not
a part is enabled, so a run is reproducible and resumable from the generator's state.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

from hrda_kedro.hrda import denormalize, normalize

# Per image: jitter gate, brightness, contrast, saturation, hue, 4 order keys, blur gate, sigma.
_DRAWS_PER_IMAGE = 11


def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Odd Gaussian kernel size of about ``fraction`` of an image side, at least 3.

    Sizes of 3 or more make the blur visible even on tiny test images; the cost grows with
    the square of the kernel, while for sigma <= 1.15 the tail beyond ~5 px is negligible.
    """
    size = max(int(fraction * side), 3)
    return size if size % 2 == 1 else size + 1


def _color_jitter(image: torch.Tensor, draws: list[float], strength: float) -> torch.Tensor:
    """Brightness, contrast, saturation and hue in a random order, factors in ``1 +- s``."""
    brightness, contrast, saturation, hue = (strength * (2.0 * u - 1.0) for u in draws[:4])
    ops = (
        lambda x: TF.adjust_brightness(x, 1.0 + brightness),
        lambda x: TF.adjust_contrast(x, 1.0 + contrast),
        lambda x: TF.adjust_saturation(x, 1.0 + saturation),
        lambda x: TF.adjust_hue(x, hue),
    )
    order = sorted(range(4), key=lambda i: draws[4 + i])
    for index in order:
        image = ops[index](image)
    return image


def strong_augment(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    color_jitter: bool = True,
    jitter_p: float = 0.8,
    jitter_strength: float = 0.2,
    blur: bool = True,
    blur_p: float = 0.5,
    blur_sigma: tuple[float, float] = (0.15, 1.15),
    blur_kernel_fraction: float = 0.1,
) -> torch.Tensor:
    """Augment normalised images ``(B, 3, H, W)``; returns a new tensor of the same dtype.

    Colour jitter (probability ``jitter_p``): brightness, contrast and saturation factors
    uniform in ``[1 - s, 1 + s]`` and a hue shift uniform in ``[-s, s]`` (``s =
    jitter_strength``), applied in a random order. Blur (probability ``blur_p``): Gaussian
    with sigma uniform in ``blur_sigma``, kernel from :func:`blur_kernel_size` per axis.
    Work happens on 0-1 RGB (denormalise, augment, renormalise); images left untouched
    are returned bit for bit. Use a CPU generator: the draws are read on the host.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    for name, p in (("jitter_p", jitter_p), ("blur_p", blur_p)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {p}")
    if not 0.0 <= jitter_strength <= 0.5:
        raise ValueError(f"jitter_strength must lie in [0, 0.5], got {jitter_strength}")
    if not 0.0 < blur_sigma[0] <= blur_sigma[1]:
        raise ValueError(f"blur_sigma must be 0 < low <= high, got {blur_sigma}")
    batch, _, height, width = images.shape
    draws = torch.rand(
        batch, _DRAWS_PER_IMAGE, generator=generator, device=generator.device
    ).tolist()
    kernel = [
        blur_kernel_size(width, blur_kernel_fraction),
        blur_kernel_size(height, blur_kernel_fraction),
    ]
    out = images.clone()
    for i, d in enumerate(draws):
        do_jitter = color_jitter and d[0] < jitter_p
        do_blur = blur and d[9] < blur_p
        if not (do_jitter or do_blur):
            continue
        image = (denormalize(images[i : i + 1].float()) / 255.0).clamp_(0.0, 1.0)
        if do_jitter:
            image = _color_jitter(image, d[1:9], jitter_strength)
        if do_blur:
            sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * d[10]
            image = TF.gaussian_blur(image, kernel_size=kernel, sigma=[sigma, sigma])
        out[i : i + 1] = normalize(image * 255.0).to(images.dtype)
    return out
