"""ClassMix: per-image class choice (ceil(n/2), uniform), exact masks, mixing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hrda_kedro.hrda.uda.classmix import classmix_masks, mix_batch


def _labels(seed: int) -> torch.Tensor:
    """Four images with 5, 4, 1 and 0 classes (plus ignore pixels)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.full((4, 12, 10), 255, dtype=torch.int64)
    class_sets = ([0, 2, 7, 13, 18], [1, 5, 11, 12], [10], [])
    for i, classes in enumerate(class_sets):
        if classes:
            pick = torch.randint(len(classes), (10, 10), generator=generator)
            image = torch.tensor(classes)[pick]
            image.view(-1)[: len(classes)] = torch.tensor(classes)  # every class present
            labels[i, :10] = image
    return labels


@pytest.mark.parametrize("seed", range(5))
def test_masks_cover_exactly_ceil_half_of_present_classes(seed: int) -> None:
    labels = _labels(seed)
    masks = classmix_masks(labels, torch.Generator().manual_seed(100 + seed))
    assert masks.dtype == torch.bool
    assert masks.shape == (4, 1, 12, 10)
    for i in range(4):
        present = set(labels[i].unique().tolist()) - {255}
        chosen = set(labels[i][masks[i, 0]].unique().tolist())
        assert chosen <= present
        assert len(chosen) == math.ceil(len(present) / 2)
        expected = torch.isin(labels[i], torch.tensor(sorted(chosen), dtype=torch.int64))
        assert torch.equal(masks[i, 0], expected)  # every pixel of a chosen class, no other
        assert not masks[i, 0][labels[i] == 255].any()


def test_choice_is_uniform_without_replacement() -> None:
    n_images = 3000
    labels = torch.tensor([[3, 8], [14, 17]]).expand(n_images, 2, 2).contiguous()
    masks = classmix_masks(labels, torch.Generator().manual_seed(0))
    counts = {pair: 0 for pair in itertools.combinations((3, 8, 14, 17), 2)}
    for i in range(n_images):
        chosen = tuple(sorted(labels[i][masks[i, 0]].unique().tolist()))
        counts[chosen] += 1
    expected = n_images / len(counts)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 25.7  # df = 5, p ~ 1e-4


def test_same_generator_state_same_masks() -> None:
    labels = _labels(0)
    a = classmix_masks(labels, torch.Generator().manual_seed(7))
    b = classmix_masks(labels, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_mix_batch_values() -> None:
    masks = torch.tensor([[[True, False], [False, True]]]).view(1, 1, 2, 2)
    source = torch.full((1, 3, 2, 2), 1.0)
    target = torch.full((1, 3, 2, 2), -1.0)
    source_labels = torch.tensor([[[4, 5], [6, 7]]])
    pseudo = torch.tensor([[[0, 1], [2, 3]]])
    weights = torch.tensor([[[0.2, 0.3], [0.4, 0.5]]])
    images, labels, mixed_weights = mix_batch(masks, source, target, source_labels, pseudo, weights)
    assert torch.equal(images[0, :, 0, 0], torch.ones(3))
    assert torch.equal(images[0, :, 0, 1], -torch.ones(3))
    assert torch.equal(images[0, :, 1, 1], torch.ones(3))
    assert torch.equal(labels, torch.tensor([[[4, 1], [2, 7]]]))
    torch.testing.assert_close(mixed_weights, torch.tensor([[[1.0, 0.3], [0.4, 1.0]]]))
    assert labels.dtype == torch.int64


def test_mix_batch_rejects_mismatched_shapes() -> None:
    masks = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="target_images"):
        mix_batch(
            masks,
            torch.zeros(2, 3, 4, 4),
            torch.zeros(2, 3, 4, 5),
            torch.zeros(2, 4, 4, dtype=torch.int64),
            torch.zeros(2, 4, 4, dtype=torch.int64),
            torch.zeros(2, 4, 4),
        )
