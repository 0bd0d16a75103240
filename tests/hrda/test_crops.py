"""Boxes and the aligned uniform crop sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hrda_kedro.hrda.crops import Box, sample_box


def test_box_edges_and_crop_slice_last_two_dims() -> None:
    box = Box(1, 2, 3, 4)
    assert (box.bottom, box.right) == (4, 6)
    tensor = torch.arange(2 * 5 * 8).reshape(2, 5, 8)
    assert torch.equal(box.crop(tensor), tensor[:, 1:4, 2:6])
    assert box.crop(tensor).shape == (2, 3, 4)


def test_box_accepts_numpy_integers_and_is_frozen() -> None:
    box = Box(np.int64(2), 0, 4, 4)
    assert type(box.top) is int
    assert box == Box(2, 0, 4, 4)
    with pytest.raises(AttributeError):
        box.top = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 0, 2, 2), "top/left"),
        ((0, 0, 0, 2), "height/width"),
        ((0, 0, 2, -2), "height/width"),
        ((0.5, 0, 2, 2), "Box.top must be an integer"),
    ],
)
def test_box_rejects_invalid_values(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Box(*args)


def test_crop_outside_the_tensor_raises() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        Box(2, 0, 4, 4).crop(torch.zeros(5, 8))


def test_scaled_down_divides_every_coordinate() -> None:
    assert Box(8, 16, 24, 32).scaled_down(8) == Box(1, 2, 3, 4)
    with pytest.raises(ValueError, match="top, width not divisible"):
        Box(4, 16, 24, 36).scaled_down(8)
    with pytest.raises(ValueError, match="positive"):
        Box(8, 8, 8, 8).scaled_down(0)


def test_sample_box_reaches_every_aligned_position_and_only_those() -> None:
    container, size, align = (20, 26), (8, 12), 4
    generator = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(600):
        box = sample_box(container, size, align, generator)
        assert (box.height, box.width) == size
        assert box.top % align == 0 and box.left % align == 0
        assert box.bottom <= container[0] and box.right <= container[1]
        seen.append((box.top, box.left))
    # tops 0..12 and lefts 0..12 (26 - 12 = 14 -> last aligned offset 12), the last included
    legal = set(itertools.product(range(0, 13, 4), range(0, 13, 4)))
    assert set(seen) == legal
    # roughly uniform: 16 positions, 600 draws -> ~37.5 each
    counts = [seen.count(position) for position in legal]
    assert min(counts) > 15 and max(counts) < 65


def test_box_as_large_as_the_container_has_one_position() -> None:
    assert sample_box((16, 8), (16, 8), 8) == Box(0, 0, 16, 8)


def test_sampling_is_reproducible_from_the_generator_state() -> None:
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = [sample_box((64, 64), (16, 16), 4, generator) for _ in range(5)]
    generator.set_state(state)
    assert [sample_box((64, 64), (16, 16), 4, generator) for _ in range(5)] == first
    assert len(set(first)) > 1


@pytest.mark.parametrize(
    ("container", "box", "align", "message"),
    [
        ((16, 16), (20, 8), 4, "larger than the container"),
        ((16, 16), (8, 20), 4, "larger than the container"),
        ((16, 16), (6, 8), 4, "multiple of align=4"),
        ((16, 16), (8, 8), 0, "align must be a positive"),
        ((16, 16), (0, 8), 4, "box_hw must be positive"),
        ((16,), (8, 8), 4, "container_hw must be"),
    ],
)
def test_sample_box_errors_name_the_problem(
    container: tuple, box: tuple, align: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sample_box(container, box, align)
