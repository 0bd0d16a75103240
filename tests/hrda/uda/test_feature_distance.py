"""ImageNet feature distance: thing-cell mask, hand-computed loss, empty mask, gradients."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.hrda.uda.feature_distance import feature_distance_loss, thing_mask


def _labels() -> torch.Tensor:
    """4x4 label seen by a 2x2 feature grid (cells of 2x2 pixels).

    Cell (0,0): 4 car -> thing. Cell (0,1): 3 car + 1 road = 0.75 -> thing.
    Cell (1,0): 2 car + 2 person, all thing pixels but no class >= 0.75 -> not.
    Cell (1,1): road -> not.
    """
    return torch.tensor(
        [
            [
                [13, 13, 13, 13],
                [13, 13, 13, 0],
                [13, 13, 0, 0],
                [11, 11, 0, 0],
            ]
        ]
    )


def test_thing_mask_majority_with_min_ratio() -> None:
    mask = thing_mask(_labels(), (2, 2))
    assert torch.equal(mask, torch.tensor([[[True, True], [False, False]]]))
    ignored = _labels().clone()
    ignored[0, 0, 0] = 255  # 3 car + 1 ignore in cell (0,0): still 0.75
    ignored[0, 1, 2] = 255  # 2 car + 1 road + 1 ignore in cell (0,1): 0.5
    assert torch.equal(thing_mask(ignored, (2, 2)), torch.tensor([[[True, False], [False, False]]]))
    # non-divisible sizes pool adaptively
    assert thing_mask(torch.full((2, 5, 7), 13), (2, 3)).all()
    with pytest.raises(ValueError, match="min_ratio"):
        thing_mask(_labels(), (2, 2), min_ratio=0.5)


def test_loss_matches_hand_computation_and_only_thing_cells_contribute() -> None:
    student = torch.zeros(1, 2, 2, 2)
    student[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # distance 5
    student[0, :, 0, 1] = torch.tensor([6.0, 8.0])  # distance 10
    student[0, :, 1, 0] = torch.tensor([100.0, 0.0])  # not a thing cell
    student[0, :, 1, 1] = torch.tensor([0.0, 100.0])  # not a thing cell
    student.requires_grad_(True)
    imagenet = torch.zeros(1, 2, 2, 2, requires_grad=True)
    loss = feature_distance_loss(student, imagenet, _labels(), weight=0.005)
    torch.testing.assert_close(loss, torch.tensor(0.005 * (5.0 + 10.0) / 2))
    loss.backward()
    assert student.grad is not None
    assert student.grad[0, :, 0].abs().sum() > 0
    assert torch.equal(student.grad[0, :, 1], torch.zeros(2, 2))
    assert imagenet.grad is None  # the ImageNet features are detached


def test_empty_mask_gives_zero_with_a_finite_gradient() -> None:
    student = torch.randn(2, 4, 3, 3, requires_grad=True)
    imagenet = torch.randn(2, 4, 3, 3)
    road = torch.zeros(2, 12, 12, dtype=torch.int64)
    loss = feature_distance_loss(student, imagenet, road)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_identical_features_have_a_finite_gradient() -> None:
    # At the start of training the student encoder equals the ImageNet one.
    features = torch.randn(1, 4, 2, 2)
    student = features.clone().requires_grad_(True)
    loss = feature_distance_loss(student, features, torch.full((1, 8, 8), 13))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(student.grad).all()


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="share one"):
        feature_distance_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 3), _labels())
