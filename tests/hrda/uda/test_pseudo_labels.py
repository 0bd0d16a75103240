"""Pseudo-labels: argmax, scalar and per-pixel confidence weights, border margins."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.uda.batches import CropBatch, border_margin_weights
from hrda_kedro.hrda.uda.pseudo_labels import (
    HRDA_MARGINS,
    make_pseudo_labels,
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


def _batch(
    crop_hw: tuple[int, int],
    boxes: list[Box],
    sizes: list[tuple[int, int]],
    flipped: list[bool] | None = None,
) -> CropBatch:
    n = len(boxes)
    return CropBatch(
        images=torch.zeros(n, 3, *crop_hw, dtype=torch.uint8),
        labels=None,
        weights=None,
        context_boxes=boxes,
        detail_boxes=boxes,
        image_sizes=sizes,
        flipped=flipped or [False] * n,
        generator_state=torch.Generator().get_state(),
    )


def test_confident_share_is_over_the_whole_crop_and_margins_are_zeroed_after() -> None:
    """Official order: pseudo_weight = confident pixels / all pixels, then the margins of
    valid_pseudo_mask are set to 0. Here the crop is the whole 3x4 image and the margins
    are its top row and right column."""
    _, weights = make_pseudo_labels(_two_class_logits(MAX_PROB, WINNER), threshold=0.968)
    boxes = [Box(0, 0, 3, 4)] * 2
    margins = border_margin_weights(_batch((3, 4), boxes, [(3, 4)] * 2), (1, 0, 0, 1))
    weights = weights * margins
    valid = torch.ones(3, 4, dtype=torch.bool)
    valid[0, :] = False
    valid[:, 3] = False
    assert torch.equal(weights[:, ~valid], torch.zeros(2, int((~valid).sum())))
    # 5 / 12 and 1 / 12 as without margins (not 3 / 6 and 1 / 6 over the inside only)
    torch.testing.assert_close(weights[0][valid], torch.full((6,), 5 / 12))
    torch.testing.assert_close(weights[1][valid], torch.full((6,), 1 / 12))


def test_margins_are_scaled_to_each_image_and_placed_by_its_crop() -> None:
    """Margins (2, 4, 2, 2) at 8x16: image 0 is 8x16 (as given), image 1 is 16x32 (scaled
    to (4, 8, 4, 4)). Image 0's crop at rows 0-7, cols 8-15 keeps rows 2-3, cols 8-13;
    image 1's at rows 4-11, cols 24-31 keeps rows 4-7, cols 24-27 (not rows 4-11, cols
    24-29 with image 0's margins)."""
    batch = _batch((8, 8), [Box(0, 8, 8, 8), Box(4, 24, 8, 8)], [(8, 16), (16, 32)])
    weights = border_margin_weights(batch, (2, 4, 2, 2), reference_hw=(8, 16))
    expected = torch.zeros(2, 8, 8)
    expected[0, 2:4, 0:6] = 1
    expected[1, 0:4, 0:4] = 1
    assert torch.equal(weights, expected)
    flipped = _batch((8, 8), [Box(0, 8, 8, 8)], [(8, 16)], flipped=[True])
    assert torch.equal(
        border_margin_weights(flipped, (2, 4, 2, 2), (8, 16))[0], expected[0].flip(-1)
    )


def test_margins_covering_the_crop_give_zero_weights() -> None:
    batch = _batch((3, 4), [Box(0, 0, 3, 4)], [(3, 4)])
    assert torch.equal(border_margin_weights(batch, (2, 2, 0, 0)), torch.zeros(1, 3, 4))


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
