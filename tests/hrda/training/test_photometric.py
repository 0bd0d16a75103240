"""mmseg's PhotoMetricDistortion: each step's formula, 8-bit values, a fixed number of draws."""

from __future__ import annotations

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
