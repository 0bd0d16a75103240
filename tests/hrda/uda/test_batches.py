"""Training batches: crops and boxes, the source crop rules, border margins, resume, prefetch."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import pytest
import torch

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.uda import batches
from hrda_kedro.hrda.uda.batches import (
    CropBatch,
    CropSpec,
    CropStream,
    Prefetcher,
    border_margin_weights,
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


def _stream(cat_max_ratio: float, rcs: bool, rcs_min_crop_pixels: int = 20) -> CropStream:
    generator = torch.Generator().manual_seed(0)
    sampler = None
    if rcs:
        counts = np.zeros((1, 19))
        counts[0, 12] = 32
        sampler = RareClassSampler(counts, min_pixels=1, generator=generator)
    spec = CropSpec((8, 16), (8, 8), align=8, flip=False, cat_max_ratio=cat_max_ratio)
    return CropStream(
        _Stripes(), 1, spec, generator, rare_class_sampler=sampler,
        rcs_min_crop_pixels=rcs_min_crop_pixels if rcs else None,
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


def test_a_crop_that_never_holds_enough_of_the_class_is_the_eleventh_draw(monkeypatch) -> None:
    """Official: "more than" the threshold (32 px of rider is not > 32); one crop and up to
    ten re-draws, the last kept unchecked."""
    drawn: list[Box] = []
    real = batches.sample_box

    def spy(container_hw, box_hw, align, generator):
        box = real(container_hw, box_hw, align, generator)
        if tuple(box_hw) == (8, 16):  # the context crops, not the detail box
            drawn.append(box)
        return box

    monkeypatch.setattr(batches, "sample_box", spy)
    stream = _stream(1.0, rcs=True, rcs_min_crop_pixels=32)
    for _ in range(5):
        drawn.clear()
        box = stream.next_batch().context_boxes[0]
        assert len(drawn) == 11 and box == drawn[-1]


# -------------------------------------------------------------------- crops and boxes


class _Photos(torch.utils.data.Dataset):
    """Images whose pixels encode their position (so a crop shows where it was cut), labels
    of two bands of 32 rows (so some crops hold one class only) and a weight of the column
    index; ``sizes`` per image."""

    def __init__(self, sizes: list[tuple[int, int]], labels: bool = True) -> None:
        self.sizes = sizes
        self.labels = labels

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        height, width = self.sizes[index]
        rows = torch.arange(height)[:, None].expand(height, width)
        cols = torch.arange(width)[None, :].expand(height, width)
        image = torch.stack([rows, cols, torch.full_like(rows, index)]).to(torch.uint8)
        if not self.labels:
            return {"image": image}
        return {"image": image, "label": rows // 32, "weight": cols.float()}


SPEC = CropSpec(context_hw=(24, 32), detail_hw=(8, 16), align=8, flip=True)


def _photo_stream(
    sizes: list[tuple[int, int]], seed: int = 0, **kwargs: Any
) -> tuple[_Photos, CropStream]:
    dataset = _Photos(sizes, labels=kwargs.pop("labels", True))
    spec = kwargs.pop("spec", SPEC)
    generator = torch.Generator().manual_seed(seed)
    return dataset, CropStream(dataset, kwargs.pop("batch_size", 3), spec, generator, **kwargs)


def test_crops_and_boxes_follow_the_crop_spec() -> None:
    dataset, stream = _photo_stream([(40, 56), (48, 64), (24, 32)])
    details, flips = set(), set()
    for _ in range(60):
        batch = stream.next_batch()
        assert batch.images.shape == (3, 3, 24, 32) and batch.images.dtype == torch.uint8
        assert batch.labels.shape == (3, 24, 32) and batch.weights.shape == (3, 24, 32)
        for i, (context, detail) in enumerate(
            zip(batch.context_boxes, batch.detail_boxes, strict=True)
        ):
            index = int(batch.images[i, 2, 0, 0])
            item = dataset[index]
            assert batch.image_sizes[i] == dataset.sizes[index]
            assert (context.height, context.width) == SPEC.context_hw
            assert (detail.height, detail.width) == SPEC.detail_hw
            # the context box lies in its image, the detail box in the context crop
            assert (
                context.bottom <= item["image"].shape[1] and context.right <= item["image"].shape[2]
            )
            assert detail.bottom <= SPEC.context_hw[0] and detail.right <= SPEC.context_hw[1]
            for value in (context.top, context.left, detail.top, detail.left):
                assert value % SPEC.align == 0
            flip = (lambda t: t.flip(-1)) if batch.flipped[i] else (lambda t: t)
            assert torch.equal(batch.images[i], flip(context.crop(item["image"])))
            assert torch.equal(batch.labels[i], flip(context.crop(item["label"])))
            assert torch.equal(batch.weights[i], flip(context.crop(item["weight"])))
            details.add((detail.top, detail.left))
            flips.add(batch.flipped[i])
    assert details == {(top, left) for top in (0, 8, 16) for left in (0, 8, 16)}
    assert flips == {True, False}


def test_target_crops_without_labels_carry_none() -> None:
    _, stream = _photo_stream([(40, 56)], labels=False)
    batch = stream.next_batch()
    assert batch.labels is None and batch.weights is None


def test_a_context_larger_than_the_image_is_refused() -> None:
    _, stream = _photo_stream([(16, 64)])
    with pytest.raises(ValueError, match="larger than the container"):
        stream.next_batch()


# -------------------------------------------------------------------- border margins


def _whole_image_margins(hw: tuple[int, int], margins: tuple[int, int, int, int]) -> torch.Tensor:
    """The official valid-pseudo-label mask of a whole image: 0 in the border bands."""
    top, bottom, left, right = margins
    mask = torch.zeros(hw)
    mask[top : hw[0] - bottom, left : hw[1] - right] = 1
    return mask


def test_margins_are_the_whole_image_bands_cut_like_the_crop() -> None:
    _, stream = _photo_stream([(40, 56), (48, 64)])
    margins = (9, 5, 11, 3)
    for _ in range(20):
        batch = stream.next_batch()
        weights = border_margin_weights(batch, margins)
        for i, box in enumerate(batch.context_boxes):
            expected = box.crop(_whole_image_margins(batch.image_sizes[i], margins))
            assert torch.equal(weights[i], expected.flip(-1) if batch.flipped[i] else expected)


def test_a_flip_swaps_the_left_and_right_margins() -> None:
    _, stream = _photo_stream([(24, 32)], batch_size=1, spec=dataclasses.replace(SPEC, flip=False))
    batch = stream.next_batch()  # the crop is the whole image
    plain = border_margin_weights(batch, (0, 0, 5, 2))[0]
    flipped = border_margin_weights(dataclasses.replace(batch, flipped=[True]), (0, 0, 5, 2))[0]
    assert plain[:, :5].sum() == 0 and plain[:, -2:].sum() == 0 and plain[:, 5:-2].all()
    assert flipped[:, :2].sum() == 0 and flipped[:, -5:].sum() == 0 and flipped[:, 2:-5].all()
    assert torch.equal(flipped, plain.flip(-1))


def test_margins_given_at_a_reference_size_scale_to_each_image() -> None:
    _, stream = _photo_stream([(40, 56), (80, 112)], seed=3)
    margins, reference = (2, 4, 1, 3), (20, 28)  # x2 and x4 in both directions
    scaled = {(40, 56): (4, 8, 2, 6), (80, 112): (8, 16, 4, 12)}
    seen = set()
    for _ in range(10):
        batch = stream.next_batch()
        weights = border_margin_weights(batch, margins, reference)
        for i, box in enumerate(batch.context_boxes):
            hw = batch.image_sizes[i]
            expected = box.crop(_whole_image_margins(hw, scaled[hw]))
            assert torch.equal(weights[i], expected.flip(-1) if batch.flipped[i] else expected)
            seen.add(hw)
    assert seen == set(scaled)


# -------------------------------------------------------------------- resume and threads


def _same_batches(first: list[CropBatch], second: list[CropBatch]) -> None:
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert a.context_boxes == b.context_boxes and a.detail_boxes == b.detail_boxes
        assert a.flipped == b.flipped and a.image_sizes == b.image_sizes
        assert torch.equal(a.generator_state, b.generator_state)


def _rare_class_stream(seed: int, decode_threads: int = 1) -> CropStream:
    """Rare class sampling and cat_max_ratio on: every consumer of the generator."""
    dataset = _Photos([(40, 56), (48, 64), (24, 32), (40, 40)])
    counts = np.array([[1000, 500], [800, 900], [700, 0], [500, 300]])
    generator = torch.Generator().manual_seed(seed)
    sampler = RareClassSampler(counts, min_pixels=50, generator=generator)
    spec = dataclasses.replace(SPEC, cat_max_ratio=0.75)
    return CropStream(
        dataset, 2, spec, generator, rare_class_sampler=sampler, rcs_min_crop_pixels=20,
        decode_threads=decode_threads,
    )  # fmt: skip


def test_a_stream_restored_from_a_batch_state_draws_the_next_batches() -> None:
    stream = _rare_class_stream(seed=1)
    batches_seen = [stream.next_batch() for _ in range(8)]
    resumed = _rare_class_stream(seed=99)  # as a restarted run, before the checkpoint loads
    resumed.generator.set_state(batches_seen[3].generator_state)
    _same_batches([resumed.next_batch() for _ in range(4)], batches_seen[4:])


def test_decode_threads_do_not_change_the_batches() -> None:
    one = _rare_class_stream(seed=2)
    three = _rare_class_stream(seed=2, decode_threads=3)
    _same_batches([three.next_batch() for _ in range(6)], [one.next_batch() for _ in range(6)])


def test_pinned_batches_pin_every_tensor_and_keep_the_rest(monkeypatch) -> None:
    """On any machine: each tensor goes through ``pin_memory``, absent ones stay None."""
    pinned_ids = []

    def pin(tensor: torch.Tensor) -> torch.Tensor:
        pinned_ids.append(id(tensor))
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    _, stream = _photo_stream([(40, 56)])
    batch = stream.next_batch()
    pinned = batch.pinned()
    assert pinned_ids == [id(batch.images), id(batch.labels), id(batch.weights)]
    assert torch.equal(pinned.images, batch.images) and pinned.images is not batch.images
    assert pinned.context_boxes == batch.context_boxes and pinned.flipped == batch.flipped
    _, stream = _photo_stream([(40, 56)], labels=False)
    unlabelled = stream.next_batch().pinned()
    assert unlabelled.labels is None and unlabelled.weights is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_pinned_batches_hold_the_same_tensors_in_page_locked_memory() -> None:
    _, stream = _photo_stream([(40, 56)], labels=False)
    batch = stream.next_batch()
    pinned = batch.pinned()
    assert pinned.images.is_pinned() and torch.equal(pinned.images, batch.images)
    assert pinned.labels is None and pinned.weights is None
    assert pinned.context_boxes == batch.context_boxes


# -------------------------------------------------------------------- prefetcher


def test_the_prefetcher_returns_results_in_order() -> None:
    counter = iter(range(100))
    prefetch = Prefetcher(lambda: next(counter), depth=2)
    try:
        assert [prefetch.get() for _ in range(10)] == list(range(10))
    finally:
        prefetch.close()


def test_the_prefetcher_reraises_the_worker_error_in_order() -> None:
    calls = iter(range(3))

    def produce() -> int:
        value = next(calls, None)
        if value is None:
            raise OSError("disk gone")
        return value

    prefetch = Prefetcher(produce, depth=2)
    try:
        assert [prefetch.get() for _ in range(3)] == [0, 1, 2]
        with pytest.raises(OSError, match="disk gone"):
            prefetch.get()
    finally:
        prefetch.close()


def test_the_prefetch_thread_runs_torch_on_one_thread_and_close_restores_the_count() -> None:
    # Two OpenMP teams (the step's and the producer's) on the same cores nearly halved the
    # training speed on 2 cores; the producer's small tensor ops gain nothing from threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []
        prefetch = Prefetcher(lambda: seen.append(torch.get_num_threads()), depth=1)
        try:
            prefetch.get()
            assert seen[0] == 1
            assert torch.get_num_threads() == 2  # the consumer's own count is untouched
        finally:
            prefetch.close()
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [2]  # threads started after close begin with the caller's count again
    finally:
        torch.set_num_threads(threads)
