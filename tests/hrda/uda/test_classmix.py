"""ClassMix: per-image class choice (ceil(n/2) of the present values, the ignore label
included as officially; uniform), exact masks, mixing."""

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
        present = set(labels[i].unique().tolist())  # 255 included, as officially
        chosen = set(labels[i][masks[i, 0]].unique().tolist())
        assert chosen <= present
        assert len(chosen) == math.ceil(len(present) / 2)
        expected = torch.isin(labels[i], torch.tensor(sorted(chosen), dtype=torch.int64))
        assert torch.equal(masks[i, 0], expected)  # every pixel of a chosen class, no other


def test_the_ignore_label_is_in_the_pool_and_counts_in_n() -> None:
    # Official get_class_masks: torch.unique over the labels, 255 included. An image with
    # values {1, 2, 255} has n = 3, so ceil(3 / 2) = 2 values are pasted (1 if 255 did not
    # count), each pair equally likely; 255 is among them 2/3 of the time.
    n_images = 3000
    labels = torch.tensor([[1, 2], [255, 255]]).expand(n_images, 2, 2).contiguous()
    masks = classmix_masks(labels, torch.Generator().manual_seed(3))
    chosen = [tuple(sorted(labels[i][masks[i, 0]].unique().tolist())) for i in range(n_images)]
    assert {len(c) for c in chosen} == {2}
    counts = {pair: chosen.count(pair) for pair in ((1, 2), (1, 255), (2, 255))}
    assert sum(counts.values()) == n_images
    chi2 = sum((c - n_images / 3) ** 2 / (n_images / 3) for c in counts.values())
    assert chi2 < 18.4  # df = 2, p ~ 1e-4


def test_pasted_ignore_regions_stay_ignored_in_the_mixed_label() -> None:
    labels = torch.tensor([[[255, 4]]])  # one image, values {4, 255}: one of them pasted
    pseudo = torch.tensor([[[7, 7]]])
    outcomes = set()
    for seed in range(20):
        masks = classmix_masks(labels, torch.Generator().manual_seed(seed))
        _, mixed, weights = mix_batch(
            masks, torch.ones(1, 3, 1, 2), torch.zeros(1, 3, 1, 2), labels, pseudo,
            torch.full((1, 1, 2), 0.5),
        )  # fmt: skip
        outcomes.add(bool(masks[0, 0, 0, 0]))
        if masks[0, 0, 0, 0]:  # the ignore region was pasted: label 255 (no loss there)
            assert torch.equal(mixed, torch.tensor([[[255, 7]]]))
            torch.testing.assert_close(weights, torch.tensor([[[1.0, 0.5]]]))
        else:
            assert torch.equal(mixed, torch.tensor([[[7, 4]]]))
    assert outcomes == {True, False}


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
