"""mmseg's PhotoMetricDistortion: each step's formula, 8-bit values, a fixed number of draws."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hrda_kedro.hrda.training.photometric import _distort, photometric_distortion

OFF = 0.9  # a gate draw at or above 0.5: the step is skipped
ON = 0.0


def _pixel(*rgb: float) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1)


def _draws(**steps: tuple[float, float]) -> list[float]:
    """Nine draws: every step off unless given as ``name=(gate, value)``; contrast first."""
    b, c, s, h = (steps.get(k, (OFF, 0.5)) for k in ("brightness", "contrast", "sat", "hue"))
    order = steps.get("order", (0.0,))[0]
    return [b[0], b[1], order, c[0], c[1], s[0], s[1], h[0], h[1]]


def test_no_step_drawn_leaves_the_image_as_is() -> None:
    image = torch.randint(0, 256, (3, 8, 8)).float()
    assert torch.equal(_distort(image.clone(), _draws()), image)


def test_brightness_adds_up_to_32_grey_levels_clipped_to_8_bits() -> None:
    brighter = _distort(_pixel(10, 100, 250), _draws(brightness=(ON, 1.0)))
    assert brighter.flatten().tolist() == [42, 132, 255]
    darker = _distort(_pixel(10, 100, 250), _draws(brightness=(ON, 0.0)))
    assert darker.flatten().tolist() == [0, 68, 218]


def test_contrast_multiplies_and_truncates() -> None:
    """mmseg's contrast scales the values (no blending towards the mean), ``astype(uint8)``."""
    halved = _distort(_pixel(201, 100, 3), _draws(contrast=(ON, 0.0)))
    assert halved.flatten().tolist() == [100, 50, 1]


def test_contrast_before_or_after_the_colour_steps_as_drawn() -> None:
    """Order matters where values clip: brighten a grey to 255, then halve it, or not."""
    pixel = _pixel(240, 240, 240)
    steps = {"brightness": (ON, 1.0), "contrast": (ON, 0.0)}
    both = _distort(pixel, _draws(**steps)).flatten().tolist()
    assert both == [127, 127, 127]  # brightness, then contrast (either position)
    saturated = {**steps, "sat": (ON, 1.0)}
    first = _distort(pixel, _draws(**saturated, order=(0.0,)))
    last = _distort(pixel, _draws(**saturated, order=(0.9,)))
    assert torch.equal(first, last)  # a grey has no saturation to change
    red = _pixel(250, 100, 100)
    hue = {"contrast": (ON, 1.0), "hue": (ON, 1.0)}
    assert not torch.equal(
        _distort(red, _draws(**hue, order=(0.0,))), _distort(red, _draws(**hue, order=(0.9,)))
    )


def test_saturation_scales_hsv_s_and_keeps_value() -> None:
    # S = (200 - 100) / 200 = 0.5, halved to 0.25: min = 200 * 0.75 = 150.
    less = _distort(_pixel(200, 100, 100), _draws(sat=(ON, 0.0)))
    assert less.flatten().tolist() == [200, 150, 150]


def test_hue_rotates_by_whole_opencv_units_from_minus_18_to_17() -> None:
    """2 degrees per unit; NumPy's ``randint(-18, 18)`` never draws +18."""
    assert _distort(_pixel(255, 0, 0), _draws(hue=(ON, 0.0))).flatten().tolist() == [255, 0, 153]
    red, green, blue = _distort(_pixel(255, 0, 0), _draws(hue=(ON, 0.9999))).flatten().tolist()
    assert (red, blue) == (255, 0) and abs(green - 255 * 34 / 60) <= 1  # +17 units: 34 degrees
    unchanged = _distort(_pixel(255, 0, 0), _draws(hue=(ON, 0.5)))  # 0 units
    assert unchanged.flatten().tolist() == [255, 0, 0]


def test_nine_draws_per_image_whatever_is_applied() -> None:
    """A fixed count keeps a resumed run's generator in step with an uninterrupted one."""
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(4)
    reference = torch.Generator().manual_seed(4)
    out = photometric_distortion(images, generator)
    torch.rand(3, 9, generator=reference)
    assert torch.equal(generator.get_state(), reference.get_state())
    assert out.dtype == torch.uint8 and out.shape == images.shape
    again = photometric_distortion(images, torch.Generator().manual_seed(4))
    assert torch.equal(out, again)


def test_half_of_the_steps_apply_on_average() -> None:
    """Each step's gate is a fair coin, as mmseg's ``randint(2)``: most images change, and
    about one in sixteen is left as is."""
    images = torch.full((400, 3, 2, 2), 128, dtype=torch.uint8)
    images[:, 0] = 200
    out = photometric_distortion(images, torch.Generator().manual_seed(0))
    untouched = (out == images).flatten(1).all(dim=1).float().mean().item()
    assert 0.03 < untouched < 0.11


def test_rejects_float_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        photometric_distortion(torch.rand(1, 3, 4, 4), torch.Generator())


def _official_on_opencv(rgb: Any, draws: list[float]) -> Any:
    """mmseg's steps as the official code runs them: BGR uint8, OpenCV's 8-bit HSV."""
    import cv2
    import numpy as np

    def convert(img: Any, alpha: float = 1.0, beta: float = 0.0) -> Any:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    b_gate, b_value, order, c_gate, c_value, s_gate, s_value, h_gate, h_value = draws
    img = rgb[..., ::-1].copy()
    contrast_first = order < 0.5

    def contrast(x: Any) -> Any:
        return convert(x, alpha=0.5 + c_value) if c_gate < 0.5 else x

    if b_gate < 0.5:
        img = convert(img, beta=-32.0 + 64.0 * b_value)
    if contrast_first:
        img = contrast(img)
    if s_gate < 0.5:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[..., 1] = convert(hsv[..., 1], alpha=0.5 + s_value)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if h_gate < 0.5:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        units = min(int(h_value * 36), 35) - 18
        hsv[..., 0] = (hsv[..., 0].astype(int) + units) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if not contrast_first:
        img = contrast(img)
    return img[..., ::-1]


@pytest.mark.parametrize(
    ("steps", "exact"),
    [((ON, OFF, OFF), True), ((OFF, ON, OFF), False), ((OFF, OFF, ON), False)],
    ids=["brightness_and_contrast", "saturation", "hue"],
)
def test_against_the_official_steps_on_opencv(steps: tuple[float, ...], exact: bool) -> None:
    """Brightness and contrast equal the official 8-bit steps exactly; the HSV steps, which
    skip OpenCV's 8-bit H and S, stay within a few grey levels (measured: mean 0.4 to 0.6,
    at most 6; the deviation row in docs/architecture.md)."""
    pytest.importorskip("cv2")
    import numpy as np

    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(20):
        rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        draws = list(rng.random(9))
        draws[0] = draws[3] = steps[0]
        draws[5], draws[7] = steps[1], steps[2]
        ours = _distort(torch.from_numpy(rgb).permute(2, 0, 1).float(), draws)
        official = _official_on_opencv(rgb, draws)
        diffs.append(np.abs(ours.permute(1, 2, 0).numpy() - official.astype(np.float32)))
    diff = np.stack(diffs)
    if exact:
        assert diff.max() == 0
    else:
        assert diff.mean() < 1.0 and diff.max() <= 8
