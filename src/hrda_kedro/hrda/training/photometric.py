"""mmseg's ``PhotoMetricDistortion`` of the source crops (official source-only pipelines).

The official source-only configs (``gta_to_cityscapes_512x512.py``) and the augmented-
source UDA configs (``gtaCAug``, ``gtaCAugHR``: adversarial and entropy-minimisation HRDA)
distort every source crop photometrically; the DACS recipe does not. Per image, each
with probability 0.5: a brightness offset uniform in ``+-32`` grey levels, a contrast
factor uniform in ``[0.5, 1.5]`` (before the colour steps or after them, with equal
probability), a saturation factor uniform in ``[0.5, 1.5]`` on HSV's ``S``, and a hue
shift of an integer from -18 to 17 OpenCV hue units of 2 degrees (NumPy's
``randint(-18, 18)`` excludes 18). As officially the
image is 8-bit between the steps: brightness and contrast clip to ``[0, 255]`` and
truncate, the HSV steps round. The HSV round trip itself is computed in closed form on
floats (:func:`~hrda_kedro.hrda.uda.augment.adjust_saturation`, torchvision's hue
rotation), without OpenCV's 8-bit ``H`` (2 degree steps) and ``S``: against the official
steps on OpenCV, brightness and contrast are identical, and the saturation and hue steps
differ by 0.4 to 0.6 grey levels on average, 6 at most, on random images
(``tests/hrda/training/test_photometric.py``, where OpenCV is installed).

All random numbers come from the given generator, nine per image whatever is drawn, so a
run is reproducible and resumable from the generator's state.
"""

from __future__ import annotations

import torch

from hrda_kedro.hrda.uda.augment import adjust_hue, adjust_saturation

# Per image: brightness gate and offset, contrast position, contrast gate and factor,
# saturation gate and factor, hue gate and shift.
_DRAWS_PER_IMAGE = 9
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # OpenCV's 8-bit hue: 180 units per turn


def _scaled(image: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """mmseg's ``convert``: ``image * alpha + beta``, clipped to 8 bits and truncated."""
    return (image * alpha + beta).clamp_(0.0, 255.0).floor_()


def _in_range(u: float, bounds: tuple[float, float]) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _distort(image: torch.Tensor, draws: list[float]) -> torch.Tensor:
    """One ``(3, H, W)`` float image with 8-bit values, distorted by one draw of nine."""
    b_gate, b_value, order, c_gate, c_value, s_gate, s_value, h_gate, h_value = draws

    def contrast(x: torch.Tensor) -> torch.Tensor:
        return _scaled(x, alpha=_in_range(c_value, CONTRAST_RANGE)) if c_gate < 0.5 else x

    if b_gate < 0.5:
        image = _scaled(image, beta=_in_range(b_value, (-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)))
    contrast_first = order < 0.5
    if contrast_first:
        image = contrast(image)
    if s_gate < 0.5:
        factor = _in_range(s_value, SATURATION_RANGE)
        image = (adjust_saturation(image / 255.0, factor) * 255.0).round_()
    if h_gate < 0.5:
        # NumPy's randint(-18, 18), as officially: -18 to 17.
        units = min(int(h_value * 2 * HUE_DELTA), 2 * HUE_DELTA - 1) - HUE_DELTA
        image = (adjust_hue(image / 255.0, units / 180.0) * 255.0).round_()
    if not contrast_first:
        image = contrast(image)
    return image


def photometric_distortion(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Distort ``uint8`` images ``(B, 3, H, W)`` on their device; returns new ``uint8`` images.

    Use a CPU generator: the draws are read on the host, so no device sync is needed."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    draws = torch.rand(images.shape[0], _DRAWS_PER_IMAGE, generator=generator).tolist()
    distorted = [_distort(image.float(), d) for image, d in zip(images, draws, strict=True)]
    return torch.stack(distorted).to(torch.uint8)
