"""Rare class sampling: probabilities, sampling statistics, eligibility, the log.

The crop re-draws for the sampled class run in the crop stream: tests/hrda/uda/test_batches.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hrda_kedro.hrda.uda.rcs import (
    RareClassSampler,
    rare_class_probabilities,
    scale_min_pixels,
)


def test_probabilities_match_hand_computation() -> None:
    freq = torch.tensor([0.5, 0.3, 0.2, 0.0])
    probs = rare_class_probabilities(freq, temperature=0.1)
    z = math.exp(5) + math.exp(7) + math.exp(8)
    expected = torch.tensor([math.exp(5) / z, math.exp(7) / z, math.exp(8) / z, 0.0])
    torch.testing.assert_close(probs, expected.double())
    assert probs[3] == 0.0
    # pixel counts are normalised first
    torch.testing.assert_close(rare_class_probabilities(np.array([50, 30, 20, 0]), 0.1), probs)


def test_probabilities_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="temperature"):
        rare_class_probabilities(torch.tensor([1.0, 2.0]), temperature=0.0)
    with pytest.raises(ValueError, match="class_frequencies"):
        rare_class_probabilities(torch.zeros(3))


# 6 images x 4 classes. Class 3 never reaches min_pixels=100 -> excluded.
COUNTS = np.array(
    [
        [5000, 0, 150, 50],
        [4000, 300, 0, 0],
        [6000, 100, 0, 20],
        [3000, 0, 99, 0],
        [2000, 50, 400, 0],
        [1000, 0, 0, 10],
    ]
)


def test_sampler_class_distribution_and_eligibility() -> None:
    # A high temperature keeps every eligible class frequent enough to test statistically.
    sampler = RareClassSampler(
        COUNTS, temperature=0.5, min_pixels=100, generator=torch.Generator().manual_seed(0)
    )
    freq = COUNTS.sum(axis=0) / COUNTS.sum()
    logits = (1 - freq[:3]) / 0.5
    expected = np.exp(logits - logits.max())
    expected = np.append(expected / expected.sum(), 0.0)
    torch.testing.assert_close(sampler.probabilities, torch.from_numpy(expected))
    assert expected[:3].min() > 0.05

    n = 6000
    class_counts = np.zeros(4)
    image_counts: dict[int, dict[int, int]] = {c: {} for c in range(4)}
    for _ in range(n):
        image, class_id = sampler.sample()
        assert COUNTS[image, class_id] >= 100
        class_counts[class_id] += 1
        image_counts[class_id][image] = image_counts[class_id].get(image, 0) + 1
    assert class_counts[3] == 0
    chi2 = float(((class_counts[:3] - n * expected[:3]) ** 2 / (n * expected[:3])).sum())
    assert chi2 < 18.4  # df = 2, p ~ 1e-4
    assert set(image_counts[1]) == {1, 2}  # both eligible images are drawn
    assert set(image_counts[2]) == {0, 4}


def test_sampler_without_eligible_images_fails() -> None:
    with pytest.raises(ValueError, match="min_pixels"):
        RareClassSampler(COUNTS, min_pixels=10**6)


def test_scale_min_pixels() -> None:
    assert scale_min_pixels((1440, 2560)) == 3000
    assert scale_min_pixels((720, 1280)) == 750
    assert scale_min_pixels((1024, 2048)) == 1707  # 3000 * 2097152 / 3686400 = 1706.7
    assert scale_min_pixels((8, 8)) == 1


def test_the_log_names_the_classes(caplog: pytest.LogCaptureFixture) -> None:
    counts = torch.tensor([[100, 5, 0], [50, 8, 1]])  # pole and rider never reach 10 pixels
    with caplog.at_level("INFO", logger="hrda_kedro.hrda.uda.rcs"):
        RareClassSampler(counts, min_pixels=10, class_names=["road", "pole", "rider"])
    text = caplog.text
    assert "classes pole, rider have no image" in text
    assert "road 1.000, pole 0.000, rider 0.000" in text


def test_a_tiny_temperature_draws_the_rarest_class_that_has_an_image() -> None:
    """The rarest class (3) has no image with min_pixels: at T = 1e-9 the full softmax gave
    it all the mass, and the sampler found no class to draw."""
    counts = np.array([[500, 300, 200, 5], [400, 300, 150, 5]])
    sampler = RareClassSampler(counts, temperature=1e-9, min_pixels=100)
    assert sampler.probabilities.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert {sampler.sample()[1] for _ in range(5)} == {2}
