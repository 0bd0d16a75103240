"""Sliding windows: geometry, the output-grid average and its weights."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.windows import (
    distinct_crops,
    sliding_window_boxes,
    sliding_window_grid,
    window_weight_map,
)
from tests.hrda.test_model import CellNet


def covered(boxes: list[Box], image_hw: tuple[int, int]) -> torch.Tensor:
    counts = torch.zeros(image_hw, dtype=torch.long)
    for box in boxes:
        box.crop(counts).add_(1)  # also raises if a box sticks out
    return counts


def test_sliding_window_boxes_snap_the_last_window_to_the_border() -> None:
    boxes = sliding_window_boxes((10, 8), (4, 4), (3, 3))
    assert [(b.top, b.left) for b in boxes] == [
        (top, left) for top in (0, 3, 6) for left in (0, 3, 4)
    ]
    assert all((b.height, b.width) == (4, 4) for b in boxes)
    assert (covered(boxes, (10, 8)) > 0).all()


@pytest.mark.parametrize(
    ("image", "window", "stride"),
    [((64, 96), (32, 32), (16, 16)), ((37, 53), (16, 24), (8, 8)), ((16, 16), (16, 16), (8, 8))],
)
def test_sliding_window_boxes_cover_the_image_inside_bounds(
    image: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]
) -> None:
    boxes = sliding_window_boxes(image, window, stride)
    assert (covered(boxes, image) > 0).all()
    assert len(set(boxes)) == len(boxes)


def test_a_window_larger_than_the_image_is_clamped() -> None:
    assert sliding_window_boxes((10, 40), (16, 16), (8, 8)) == [
        Box(0, left, 10, 16) for left in (0, 8, 16, 24)
    ]


@pytest.mark.parametrize(
    ("window", "stride", "message"),
    [((4, 4), (5, 4), "must not exceed"), ((0, 4), (2, 2), "window_hw must be positive")],
)
def test_sliding_window_boxes_validate(window: tuple, stride: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sliding_window_boxes((10, 10), window, stride)


def test_sliding_window_grid_rejects_a_wrong_output_size() -> None:
    with pytest.raises(ValueError, match="expected spatial size \\(4, 4\\)"):
        sliding_window_grid(
            CellNet(output_stride=2), torch.zeros(1, 3, 32, 32), (16, 16), (8, 8), 4
        )


def test_tapered_weights_are_a_positive_centred_normalised_average() -> None:
    weight = window_weight_map((4, 6), "tapered")
    assert weight.shape == (4, 6) and (weight > 0).all()
    torch.testing.assert_close(weight, weight.flip(0))
    torch.testing.assert_close(weight, weight.flip(1))
    torch.testing.assert_close(weight[1:3, 2:4].min(), weight.max())  # the centre counts most
    # Windows that all predict the same constant stitch to exactly that constant: the
    # weights are normalised by their sum wherever windows overlap.
    constant = torch.full((1, 1, 8, 8), 2.5)
    grid = sliding_window_grid(
        lambda crops: constant.expand(crops.shape[0], 1, 8, 8),
        torch.zeros(2, 3, 40, 56),
        (32, 32),
        (16, 16),
        4,
        window_weights="tapered",
    )
    torch.testing.assert_close(grid, torch.full((2, 1, 10, 14), 2.5))


def test_distinct_crops_groups_identical_crops_exactly() -> None:
    crops = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    crops[3] = crops[1]
    crops[5] = crops[1]
    crops[4] = crops[0]
    first, inverse = distinct_crops(crops)
    assert first.tolist() == [0, 1, 2]
    assert inverse.tolist() == [0, 1, 2, 1, 0, 1]
    assert torch.equal(crops[first][inverse], crops)


def test_crops_with_the_same_key_but_other_values_stay_distinct() -> None:
    a, b = torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)
    a[0, 0, 2], b[1, 3, 1] = 0.5, 0.5  # the same values elsewhere: the same key
    first, inverse = distinct_crops(torch.stack([a, b, a]))
    assert first.tolist() == [0, 1]
    assert inverse.tolist() == [0, 1, 0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_distinct_crops_of_other_float_types(dtype: torch.dtype) -> None:
    crops = torch.randn(3, 3, 4, 4).to(dtype)
    crops[2] = crops[0]
    assert distinct_crops(crops)[1].tolist() == [0, 1, 0]
