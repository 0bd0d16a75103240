"""Pseudo-labels: argmax, scalar and per-pixel confidence weights, border margins."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.hrda.uda.pseudo_labels import (
    HRDA_MARGINS,
    make_pseudo_labels,
    margin_mask,
    scale_margins,
)


def _logits_from(probs: torch.Tensor) -> torch.Tensor:
    return probs.clamp_min(1e-12).log()


def _two_class_logits(max_prob: torch.Tensor, winner: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) logits whose softmax max is ``max_prob`` at class ``winner``."""
    p1 = torch.where(winner == 1, max_prob, 1 - max_prob)
    return _logits_from(torch.stack([1 - p1, p1], dim=1))


MAX_PROB = torch.tensor(
    [
        [[0.99, 0.50, 0.97, 0.60], [0.999, 0.90, 0.80, 0.55], [0.98, 0.99, 0.70, 0.51]],
        [[0.60, 0.60, 0.60, 0.60], [0.60, 0.995, 0.60, 0.60], [0.60, 0.60, 0.60, 0.60]],
    ]
)
WINNER = torch.tensor(
    [
        [[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0]],
        [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]],
    ]
)


def test_labels_are_the_argmax() -> None:
    labels, _ = make_pseudo_labels(_two_class_logits(MAX_PROB, WINNER))
    assert labels.dtype == torch.int64
    assert torch.equal(labels, WINNER)


def test_scalar_weight_is_per_image_confident_fraction() -> None:
    _, weights = make_pseudo_labels(_two_class_logits(MAX_PROB, WINNER), threshold=0.968)
    assert weights.dtype == torch.float32
    assert weights.shape == (2, 3, 4)
    # image 0: 0.99, 0.97, 0.999, 0.98, 0.99 are >= 0.968 -> 5 / 12; image 1: 1 / 12.
    torch.testing.assert_close(weights[0], torch.full((3, 4), 5 / 12))
    torch.testing.assert_close(weights[1], torch.full((3, 4), 1 / 12))


def test_pixel_weight_is_confidence_indicator() -> None:
    _, weights = make_pseudo_labels(
        _two_class_logits(MAX_PROB, WINNER), threshold=0.968, weight_mode="pixel"
    )
    torch.testing.assert_close(weights, (MAX_PROB >= 0.968).float())


def test_margins_are_zeroed_and_excluded_from_the_fraction() -> None:
    margins = (1, 0, 0, 1)  # top row and right column
    logits = _two_class_logits(MAX_PROB, WINNER)
    _, weights = make_pseudo_labels(logits, weight_mode="scalar", margins=margins)
    valid = torch.ones(3, 4, dtype=torch.bool)
    valid[0, :] = False
    valid[:, 3] = False
    assert torch.equal(weights[:, ~valid], torch.zeros(2, int((~valid).sum())))
    # image 0 inside: 0.999, 0.90, 0.80, 0.98, 0.99, 0.70 -> 3 / 6; image 1: 0.995 -> 1 / 6.
    torch.testing.assert_close(weights[0][valid], torch.full((6,), 0.5))
    torch.testing.assert_close(weights[1][valid], torch.full((6,), 1 / 6))

    _, pixel = make_pseudo_labels(logits, weight_mode="pixel", margins=margins)
    torch.testing.assert_close(pixel, ((MAX_PROB >= 0.968) & valid).float())


def test_margins_covering_everything_give_zero_weights() -> None:
    _, weights = make_pseudo_labels(_two_class_logits(MAX_PROB, WINNER), margins=(2, 2, 0, 0))
    assert torch.equal(weights, torch.zeros(2, 3, 4))


def test_margin_mask_bands() -> None:
    mask = margin_mask((5, 6), (1, 2, 1, 3))
    expected = torch.zeros(5, 6, dtype=torch.bool)
    expected[1:3, 1:3] = True
    assert torch.equal(mask, expected)


def test_output_hw_resizes_logits_to_the_label_frame() -> None:
    logits = torch.randn(2, 5, 4, 4)
    labels, weights = make_pseudo_labels(logits, output_hw=(8, 12), weight_mode="pixel")
    assert labels.shape == weights.shape == (2, 8, 12)


def test_scale_margins() -> None:
    assert scale_margins((1024, 2048)) == HRDA_MARGINS
    assert scale_margins((512, 1024)) == (15, 120, 15, 15)
    # 720x1280: 21.09 -> 21, 168.75 -> 169, 18.75 -> 19
    assert scale_margins((720, 1280)) == (21, 169, 19, 19)
    with pytest.raises(ValueError):
        scale_margins((0, 10))


def test_invalid_arguments() -> None:
    logits = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="weight_mode"):
        make_pseudo_labels(logits, weight_mode="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        make_pseudo_labels(logits, threshold=1.5)
    with pytest.raises(ValueError, match="teacher_logits"):
        make_pseudo_labels(logits[0])
