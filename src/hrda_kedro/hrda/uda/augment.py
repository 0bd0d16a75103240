"""Strong photometric augmentation of the mixed images (DACS): colour jitter and blur.

The student sees strongly augmented mixed images while the teacher labelled the clean
target image, a consistency constraint that makes self-training more robust.

The operators are those of the official code (DACS transforms on kornia 0.5.8), written
here in torch: brightness *adds* ``f - 1``, contrast *multiplies* by ``f`` (no blending
towards the mean, unlike torchvision), saturation scales HSV's ``S`` (clamped to 1), hue
rotates HSV's ``H``; each result is clamped to ``[0, 1]``; the four run in a random
order. Blur is a Gaussian with the official kernel-size rule (:func:`blur_kernel_size`).

As officially, one jitter gate and one blur gate are drawn per call (per training step),
shared by all images of the batch, while the jitter factors, order and blur sigma are
drawn per image. The official code applies colour jitter when ``uniform > 0.2``, i.e.
with probability 0.8 despite the parameter being called "probability 0.2"; here
``jitter_p`` is the real probability (0.8). All random numbers come from the given
generator, a fixed number per image whether or not a part is enabled, so a run is
reproducible and resumable from the generator's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from hrda_kedro.hrda import denormalize, normalize
from hrda_kedro.hrda.training.config import AugmentConfig

# Per image: jitter gate, brightness, contrast, saturation, hue, 4 order keys, blur gate, sigma.
# The gates of the first image serve the whole batch.
_DRAWS_PER_IMAGE = 11
# kornia's rgb_to_hsv computes S = (max - min) / (max + eps) with this eps.
_HSV_EPS = 1e-6


def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Odd Gaussian kernel size for an image side: the official rule.

    ``c = ceil(fraction * side)`` (in float64, as officially), then ``c`` if odd, else
    ``c - 1``: 1000 px give 99, 1024 px give 103, 512 px give 51; sides of 20 px or less
    give 1 (no blur).
    """
    size = math.ceil(fraction * side)
    return size if size % 2 == 1 else max(size - 1, 1)


def _gaussian_kernel_1d(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """torchvision's normalised 1D Gaussian: ``size`` taps at integer offsets from the centre."""
    offsets = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def gaussian_blur(image: torch.Tensor, kernel_wh: list[int], sigma: float) -> torch.Tensor:
    """torchvision's ``gaussian_blur`` of ``(N, C, H, W)`` images (reflect padding, the
    same kernel), computed as a row pass and a column pass.

    torchvision convolves with the whole 2D kernel: the official rule makes it 25 x 25
    taps per pixel for a 256 px crop (103 x 103 at 1024 px). That kernel is the outer
    product of two 1D kernels, so two 1D passes give the same sums in another order with
    2 k taps instead of k^2 (``tests/hrda/uda/test_augment.py``).
    """
    kernel_w, kernel_h = kernel_wh
    channels = image.shape[1]
    padded = F.pad(image, [kernel_w // 2, kernel_w // 2, kernel_h // 2, kernel_h // 2], "reflect")
    row = _gaussian_kernel_1d(kernel_w, sigma, image).expand(channels, 1, 1, kernel_w)
    column = _gaussian_kernel_1d(kernel_h, sigma, image).expand(channels, 1, 1, kernel_h)
    rows_done = F.conv2d(padded, row, groups=channels)
    return F.conv2d(rows_done, column.transpose(-1, -2), groups=channels)


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """kornia 0.5.8 ColorJitter brightness: add ``factor - 1``, clamp to ``[0, 1]``."""
    return (image + (factor - 1.0)).clamp(0.0, 1.0)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """kornia 0.5.8 contrast: multiply by ``factor``, clamp (no blending to the mean)."""
    return (image * factor).clamp(0.0, 1.0)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """kornia 0.5.8 saturation: ``S' = clamp(S * factor, 0, 1)`` in HSV, ``H`` and ``V`` kept.

    Written in closed form instead of a full HSV round trip: with ``V = max`` and
    ``delta = max - min``, HSV->RGB gives each channel ``V - V * S' * (V - c) / delta``, and
    ``S = delta / (V + eps)`` as in kornia; grey pixels (``delta = 0``) stay unchanged.
    """
    value = image.amax(dim=-3, keepdim=True)
    delta = value - image.amin(dim=-3, keepdim=True)
    new_saturation = (delta / (value + _HSV_EPS) * factor).clamp(0.0, 1.0)
    grey = delta == 0
    scale = torch.where(grey, 0.0, value * new_saturation / torch.where(grey, 1.0, delta))
    return value - (value - image) * scale


def adjust_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (kornia: ``2 pi * shift`` radians); same operator."""
    # Deferred: torchvision's import loads torch._dynamo (2 s of every `kedro` command).
    from torchvision.transforms.v2.functional import adjust_hue as rotate_hue

    return rotate_hue(image, shift)


def _color_jitter(image: torch.Tensor, draws: list[float], strength: float) -> torch.Tensor:
    """Brightness, contrast, saturation factors in ``1 +- s``, hue in ``+-s``, random order."""
    brightness, contrast, saturation, hue = (strength * (2.0 * u - 1.0) for u in draws[:4])
    ops = (
        lambda x: adjust_brightness(x, 1.0 + brightness),
        lambda x: adjust_contrast(x, 1.0 + contrast),
        lambda x: adjust_saturation(x, 1.0 + saturation),
        lambda x: adjust_hue(x, hue),
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
    shared_draws: bool = False,
) -> torch.Tensor:
    """Augment normalised images ``(B, 3, H, W)``; returns a new tensor of the same dtype.

    Colour jitter (probability ``jitter_p``, one gate for the batch): brightness, contrast
    and saturation factors uniform in ``[1 - s, 1 + s]`` and a hue shift uniform in
    ``[-s, s]`` turns (``s = jitter_strength``), per image, applied in a random order.
    Blur (probability ``blur_p``, one gate for the batch): Gaussian with sigma uniform in
    ``blur_sigma`` per image, kernel from :func:`blur_kernel_size` per axis. Work happens
    on 0-1 RGB (denormalise, augment, renormalise); images left untouched are returned
    bit for bit. Use a CPU generator: the draws are read on the host.

    ``shared_draws``: one jitter order and one blur sigma for the whole batch (the first
    image's), as one kornia call draws them for MIC's masked images; DACS transforms each
    mixed image in a call of its own, so their orders and sigmas are per image (the
    default). The factors are per image either way, and the number of draws is the same.
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
    gates = draws[0] if draws else [1.0] * _DRAWS_PER_IMAGE
    do_jitter = color_jitter and gates[0] < jitter_p
    do_blur = blur and gates[9] < blur_p
    if not (do_jitter or do_blur):
        return out
    for i, d in enumerate(draws):
        shared = draws[0] if shared_draws else d  # the jitter order and the blur sigma
        image = (denormalize(images[i : i + 1].float()) / 255.0).clamp_(0.0, 1.0)
        if do_jitter:
            image = _color_jitter(image, d[1:5] + shared[5:9], jitter_strength)
        if do_blur:
            sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * shared[10]
            image = gaussian_blur(image, kernel, sigma)
        out[i : i + 1] = normalize(image * 255.0).to(images.dtype)
    return out


def configured_augment(
    config: AugmentConfig,
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """:func:`strong_augment` with a stage's settings (mixed and MIC images; source-only,
    the source crops)."""
    options = {  # strong_augment's names for the YAML keys
        "color_jitter": config.color_jitter,
        "jitter_p": config.color_jitter_p,
        "jitter_strength": config.color_jitter_strength,
        "blur": config.blur,
        "blur_p": config.blur_p,
    }
    return partial(strong_augment, **options)
