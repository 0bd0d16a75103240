"""Strong augmentation: shape/dtype, determinism, switches, application probabilities."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.hrda import denormalize, normalize
from hrda_kedro.hrda.uda.augment import blur_kernel_size, strong_augment


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
    n = 500
    images = _images(n, size=8)
    out = strong_augment(images, torch.Generator().manual_seed(11), **kwargs)
    rate = _changed(images, out).float().mean().item()
    sigma = (probability * (1 - probability) / n) ** 0.5
    assert abs(rate - probability) < 5 * sigma


def test_blur_smooths_and_keeps_constant_images() -> None:
    impulse = torch.zeros(1, 3, 15, 15)
    impulse[..., 7, 7] = 255.0
    out = denormalize(
        strong_augment(
            normalize(impulse), torch.Generator().manual_seed(0), color_jitter=False, blur_p=1.0
        )
    )
    assert out[0, 0, 7, 7] < 255.0
    assert out[0, 0, 7, 8] > 1.0
    torch.testing.assert_close(out.sum(), impulse.sum(), rtol=1e-4, atol=1e-2)

    flat = normalize(torch.full((1, 3, 15, 15), 100.0))
    out = strong_augment(flat, torch.Generator().manual_seed(0), color_jitter=False, blur_p=1.0)
    torch.testing.assert_close(out, flat)


def test_blur_kernel_size() -> None:
    assert blur_kernel_size(1024) == 103
    assert blur_kernel_size(512) == 51
    assert blur_kernel_size(100) == 11
    assert blur_kernel_size(16) == 3


def test_invalid_arguments() -> None:
    generator = torch.Generator()
    with pytest.raises(ValueError, match="jitter_p"):
        strong_augment(_images(1), generator, jitter_p=1.2)
    with pytest.raises(ValueError, match="images"):
        strong_augment(torch.zeros(3, 8, 8), generator)
    with pytest.raises(ValueError, match="jitter_strength"):
        strong_augment(_images(1), generator, jitter_strength=0.7)
