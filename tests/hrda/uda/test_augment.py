"""Strong augmentation: the official operators and kernel sizes by hand, shape/dtype,
determinism, switches, gates shared by the batch, application probabilities."""

from __future__ import annotations

import colorsys

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from hrda_kedro.hrda import denormalize, normalize
from hrda_kedro.hrda.uda.augment import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    blur_kernel_size,
    gaussian_blur,
    strong_augment,
)


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return normalize(torch.randint(0, 256, (n, 3, size, size), generator=generator))


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return (before != after).flatten(1).any(dim=1)


def test_shape_dtype_and_range_are_kept() -> None:
    images = _images(4, size=20)
    out = strong_augment(images, torch.Generator().manual_seed(0), jitter_p=1.0, blur_p=1.0)
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    rgb = denormalize(out)
    assert rgb.min() >= -1e-3 and rgb.max() <= 255 + 1e-3
    assert _changed(images, out).all()


def test_deterministic_under_a_seeded_generator_and_resumable() -> None:
    images = _images(6)
    a = strong_augment(images, torch.Generator().manual_seed(3))
    b = strong_augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = strong_augment(images, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)

    generator = torch.Generator().manual_seed(5)
    strong_augment(images, generator)
    state = generator.get_state()
    first = strong_augment(images, generator)
    generator.set_state(state)
    assert torch.equal(strong_augment(images, generator), first)


def test_everything_off_returns_identical_images() -> None:
    images = _images(5)
    out = strong_augment(images, torch.Generator().manual_seed(0), color_jitter=False, blur=False)
    assert torch.equal(out, images)
    assert out is not images


def test_switches_consume_the_same_random_numbers() -> None:
    images = _images(3)
    generator = torch.Generator().manual_seed(1)
    strong_augment(images, generator, color_jitter=False, blur=False)
    reference = torch.Generator().manual_seed(1)
    strong_augment(images, reference)
    assert torch.equal(generator.get_state(), reference.get_state())


@pytest.mark.parametrize(
    ("kwargs", "probability"),
    [({"blur": False}, 0.8), ({"color_jitter": False}, 0.5)],
)
def test_application_probability(kwargs: dict, probability: float) -> None:
    n = 400
    image = _images(1, size=32)  # blur kernel 3
    generator = torch.Generator().manual_seed(11)
    changed = [bool(_changed(image, strong_augment(image, generator, **kwargs))) for _ in range(n)]
    rate = sum(changed) / n
    sigma = (probability * (1 - probability) / n) ** 0.5
    assert abs(rate - probability) < 5 * sigma


@pytest.mark.parametrize("kwargs", [{"blur": False}, {"color_jitter": False}])
def test_one_gate_per_call_is_shared_by_the_batch(kwargs: dict) -> None:
    # Official DACS draws one jitter and one blur gate per step for all mixed images.
    images = _images(6, size=32)
    generator = torch.Generator().manual_seed(2)
    outcomes = set()
    for _ in range(20):
        changed = _changed(images, strong_augment(images, generator, **kwargs))
        assert changed.all() or not changed.any()
        outcomes.add(bool(changed.all()))
    assert outcomes == {True, False}


def _pixel(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b]).view(1, 3, 1, 1)


def test_brightness_is_additive_and_clamped() -> None:
    out = adjust_brightness(_pixel(0.5, 0.25, 0.95), 1.1)
    torch.testing.assert_close(out, _pixel(0.6, 0.35, 1.0))
    out = adjust_brightness(_pixel(0.5, 0.05, 0.95), 0.8)
    torch.testing.assert_close(out, _pixel(0.3, 0.0, 0.75))


def test_contrast_multiplies_without_blending_to_the_mean() -> None:
    out = adjust_contrast(_pixel(0.5, 0.25, 0.9), 0.8)
    torch.testing.assert_close(out, _pixel(0.4, 0.2, 0.72))
    out = adjust_contrast(_pixel(0.5, 0.25, 0.9), 1.2)
    torch.testing.assert_close(out, _pixel(0.6, 0.3, 1.0))
    # torchvision blends towards the grey mean instead: other values
    assert not torch.allclose(TF.adjust_contrast(_pixel(0.5, 0.25, 0.9), 0.8), out)


@pytest.mark.parametrize(
    ("rgb", "factor", "expected"),
    [
        # V = 0.8, delta = 0.6, S = 0.75 -> 0.9: each channel V - (V - c) * 0.9 / 0.75
        ((0.8, 0.4, 0.2), 1.2, (0.8, 0.32, 0.08)),
        # S = 0.75 -> 0.6
        ((0.8, 0.4, 0.2), 0.8, (0.8, 0.48, 0.32)),
        # S = 0.75 -> 1.5 clamped to 1: the smallest channel reaches 0
        ((0.8, 0.4, 0.2), 2.0, (0.8, 0.26666667, 0.0)),
        # grey stays grey
        ((0.3, 0.3, 0.3), 1.2, (0.3, 0.3, 0.3)),
    ],
)
def test_saturation_scales_hsv_s(rgb: tuple, factor: float, expected: tuple) -> None:
    out = adjust_saturation(_pixel(*rgb), factor)
    torch.testing.assert_close(out, _pixel(*expected), atol=2e-6, rtol=0)
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    reference = colorsys.hsv_to_rgb(h, min(s * factor, 1.0), v)
    torch.testing.assert_close(out, _pixel(*reference), atol=2e-6, rtol=0)


def test_saturation_matches_an_hsv_round_trip_on_random_colours() -> None:
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = adjust_saturation(image, 1.15)
    for y in range(8):
        for x in range(8):
            h, s, v = colorsys.rgb_to_hsv(*image[0, :, y, x].tolist())
            reference = colorsys.hsv_to_rgb(h, min(s * 1.15, 1.0), v)
            torch.testing.assert_close(out[0, :, y, x], torch.tensor(reference), atol=1e-5, rtol=0)


def test_hue_rotates_by_turns() -> None:
    # a third of a turn: red -> green, green -> blue
    torch.testing.assert_close(adjust_hue(_pixel(1.0, 0.0, 0.0), 1 / 3), _pixel(0.0, 1.0, 0.0))
    torch.testing.assert_close(adjust_hue(_pixel(0.0, 1.0, 0.0), 1 / 3), _pixel(0.0, 0.0, 1.0))
    # 0.1 turn (36 deg) of (0.8, 0.4, 0.2): H 20 deg -> 56 deg, S and V kept
    h, s, v = colorsys.rgb_to_hsv(0.8, 0.4, 0.2)
    reference = colorsys.hsv_to_rgb(h + 0.1, s, v)
    torch.testing.assert_close(adjust_hue(_pixel(0.8, 0.4, 0.2), 0.1), _pixel(*reference))


def test_jitter_applies_the_drawn_factors_in_the_drawn_order_then_blur() -> None:
    image = _images(1, size=32, seed=3)
    draws = torch.rand(1, 11, generator=torch.Generator().manual_seed(9))[0].tolist()
    assert draws[0] < 0.8 and draws[9] < 0.5  # this seed applies both
    out = strong_augment(image, torch.Generator().manual_seed(9), jitter_strength=0.2)
    b, c, s, h = (0.2 * (2 * u - 1) for u in draws[1:5])
    ops = [
        lambda x: adjust_brightness(x, 1 + b),
        lambda x: adjust_contrast(x, 1 + c),
        lambda x: adjust_saturation(x, 1 + s),
        lambda x: adjust_hue(x, h),
    ]
    rgb = (denormalize(image) / 255).clamp(0, 1)
    for index in sorted(range(4), key=lambda i: draws[5 + i]):
        rgb = ops[index](rgb)
    sigma = 0.15 + draws[10]
    rgb = TF.gaussian_blur(rgb, kernel_size=[3, 3], sigma=[sigma, sigma])
    torch.testing.assert_close(out, normalize(rgb * 255))


def test_shared_draws_give_the_batch_one_order_and_sigma_and_keep_the_factors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MIC's masked images go through one kornia call (one jitter order, one blur sigma for
    the batch); the jitter factors stay per image, and the draws consumed are the same."""
    from hrda_kedro.hrda.uda import augment

    seen: list[list[float]] = []
    real = augment._color_jitter

    def spy(image, draws, strength):
        seen.append(list(draws))
        return real(image, draws, strength)

    monkeypatch.setattr(augment, "_color_jitter", spy)
    image = _images(1, size=32, seed=5).expand(3, -1, -1, -1).contiguous()  # 3x3 blur
    states = {}
    for shared in (False, True):
        generator = torch.Generator().manual_seed(9)  # applies jitter and blur (above)
        out = strong_augment(image, generator, shared_draws=shared)
        states[shared] = generator.get_state()
        per_image, seen[:] = seen[:], []
        if shared:
            assert all(d[4:] == per_image[0][4:] for d in per_image)  # one order
            assert len({tuple(d[:4]) for d in per_image}) == 3  # factors per image
        else:
            assert len({tuple(d[4:]) for d in per_image}) == 3
    assert torch.equal(states[False], states[True])
    jitter_off = {"color_jitter": False, "blur_p": 1.0}
    blurred = strong_augment(
        image, torch.Generator().manual_seed(9), shared_draws=True, **jitter_off
    )
    assert torch.equal(blurred[0], blurred[1]) and torch.equal(blurred[0], blurred[2])
    apart = strong_augment(image, torch.Generator().manual_seed(9), **jitter_off)
    assert not torch.equal(apart[0], apart[1])
    assert out.shape == image.shape


def test_blur_smooths_and_keeps_constant_images() -> None:
    impulse = torch.zeros(1, 3, 31, 31)  # kernel 3
    impulse[..., 15, 15] = 255.0
    out = denormalize(
        strong_augment(
            normalize(impulse), torch.Generator().manual_seed(0), color_jitter=False, blur_p=1.0
        )
    )
    assert out[0, 0, 15, 15] < 255.0
    assert out[0, 0, 15, 16] > 1.0
    torch.testing.assert_close(out.sum(), impulse.sum(), rtol=1e-4, atol=1e-2)

    flat = normalize(torch.full((1, 3, 31, 31), 100.0))
    out = strong_augment(flat, torch.Generator().manual_seed(0), color_jitter=False, blur_p=1.0)
    torch.testing.assert_close(out, flat)


@pytest.mark.parametrize(
    ("height", "width", "sigma"), [(256, 256, 1.15), (64, 160, 0.15), (40, 24, 0.7), (20, 256, 1.0)]
)
def test_two_pass_blur_equals_torchvisions_2d_blur(height: int, width: int, sigma: float) -> None:
    rgb = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(4))
    kernel = [blur_kernel_size(width), blur_kernel_size(height)]  # (x, y) as torchvision
    expected = TF.gaussian_blur(rgb, kernel_size=kernel, sigma=[sigma, sigma])
    torch.testing.assert_close(gaussian_blur(rgb, kernel, sigma), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("side", "size"),
    # official: c = ceil(0.1 * side) in float64, then c if odd else c - 1
    [(1024, 103), (1000, 99), (760, 75), (512, 51), (256, 25), (128, 13), (100, 9),
     (64, 7), (31, 3), (30, 3), (20, 1), (16, 1), (2048, 205), (1914, 191), (1052, 105)],
)  # fmt: skip
def test_blur_kernel_size_is_the_official_rule(side: int, size: int) -> None:
    assert blur_kernel_size(side) == size


def test_invalid_arguments() -> None:
    generator = torch.Generator()
    with pytest.raises(ValueError, match="jitter_p"):
        strong_augment(_images(1), generator, jitter_p=1.2)
    with pytest.raises(ValueError, match="images"):
        strong_augment(torch.zeros(3, 8, 8), generator)
    with pytest.raises(ValueError, match="jitter_strength"):
        strong_augment(_images(1), generator, jitter_strength=0.7)
