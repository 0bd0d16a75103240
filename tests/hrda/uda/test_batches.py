"""Source crop rules of the training batches: cat_max_ratio and rare-class re-crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.uda import batches
from hrda_kedro.hrda.uda.batches import (
    CropSpec,
    CropStream,
    is_class_balanced,
    redraw_unbalanced_crop,
)
from hrda_kedro.hrda.uda.rcs import RareClassSampler


def _crop(counts: dict[int, int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in counts.items()]).view(1, -1)


@pytest.mark.parametrize(
    ("counts", "balanced"),
    [
        ({0: 75, 1: 25}, False),  # 75 / 100 is not < 0.75
        ({0: 74, 1: 26}, True),
        ({0: 60, 255: 100, 1: 40}, True),  # ignored pixels do not count: 60 / 100
        ({0: 76, 255: 300, 1: 24}, False),
        ({3: 100}, False),  # one class alone is never balanced
        ({255: 10}, False),
    ],
)
def test_cat_max_ratio_test_as_mmseg(counts: dict[int, int], balanced: bool) -> None:
    assert is_class_balanced(_crop(counts), 0.75) is balanced


def _label_and_boxes() -> tuple[torch.Tensor, list[Box]]:
    label = torch.zeros(4, 16, dtype=torch.int64)
    label[:, 4:8] = 1  # box 1: half class 0, half class 1 -> balanced
    label[:2, 8:] = 2
    good, bad = Box(0, 4, 4, 8), Box(0, 0, 4, 4)  # bad: class 0 only
    return label, [bad, bad, bad, good, bad]


def test_unbalanced_crops_are_redrawn_until_one_passes() -> None:
    label, boxes = _label_and_boxes()
    draws = iter(boxes)
    calls = []

    def sample() -> Box:
        calls.append(1)
        return next(draws)

    assert redraw_unbalanced_crop(label, sample, 0.75) == Box(0, 4, 4, 8)
    assert len(calls) == 4


def test_after_ten_redraws_the_last_crop_is_kept() -> None:
    label, _ = _label_and_boxes()
    bad = [Box(0, 0, 4, 4)] * 10 + [Box(0, 12, 4, 4)]  # the 11th: unchecked
    draws = iter(bad)
    assert redraw_unbalanced_crop(label, lambda: next(draws), 0.75) == Box(0, 12, 4, 4)
    once = iter([Box(0, 0, 4, 4)])
    assert redraw_unbalanced_crop(label, lambda: next(once), 1.0) == Box(0, 0, 4, 4)


class _Stripes(torch.utils.data.Dataset):
    """One 8x64 image: columns 0-31 all road, 32-47 road/sidewalk, 48-63 road with a rider."""

    def __init__(self) -> None:
        self.label = torch.zeros(8, 64, dtype=torch.int64)
        self.label[:4, 32:48] = 1
        self.label[:, 48:] = 0
        self.label[2:6, 52:60] = 12  # 32 px of rider
        self.label[:4, 48:52] = 1

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": torch.zeros(3, 8, 64, dtype=torch.uint8), "label": self.label}


def _stream(cat_max_ratio: float, rcs: bool, spy: list | None = None) -> CropStream:
    generator = torch.Generator().manual_seed(0)
    sampler = None
    if rcs:
        counts = np.zeros((1, 19))
        counts[0, 12] = 32
        sampler = RareClassSampler(counts, min_pixels=1, generator=generator)
    spec = CropSpec((8, 16), (8, 8), align=8, flip=False, cat_max_ratio=cat_max_ratio)
    return CropStream(
        _Stripes(), 1, spec, generator, rare_class_sampler=sampler,
        rcs_min_crop_pixels=20 if rcs else None,
    )  # fmt: skip


def test_source_stream_skips_crops_one_class_dominates() -> None:
    stream = _stream(1.0, rcs=False)
    lefts = {stream.next_batch().context_boxes[0].left for _ in range(60)}
    assert 0 in lefts and 8 in lefts  # without the rule: road-only crops are drawn
    stream = _stream(0.75, rcs=False)
    lefts = {stream.next_batch().context_boxes[0].left for _ in range(60)}
    # Road shares by left edge: 0, 8, 16: 1.0; 24: 0.75 (not < 0.75); 32, 40: 0.5; 48: 0.625.
    # A batch keeps an unbalanced crop only when 11 draws in a row fail ((4/7)^11 = 0.2 %).
    assert lefts == {32, 40, 48}


def test_rare_class_crops_go_through_the_tested_function(monkeypatch) -> None:
    calls = []
    real = batches.select_crop_for_class

    def spy(label, class_id, sample_crop, min_crop_pixels, *args):
        calls.append((class_id, min_crop_pixels))
        return real(label, class_id, sample_crop, min_crop_pixels, *args)

    monkeypatch.setattr(batches, "select_crop_for_class", spy)
    stream = _stream(0.75, rcs=True)
    for _ in range(20):
        batch = stream.next_batch()
        box = batch.context_boxes[0]
        # only the crop at left 48 holds more than 20 px of rider (32; at 40: 16)
        assert box.left == 48 and int((box.crop(_Stripes().label) == 12).sum()) == 32
        detail = batch.detail_boxes[0]
        assert detail.height == 8 and detail.left in (0, 8)  # drawn inside the context crop
    assert calls == [(12, 20)] * 20
