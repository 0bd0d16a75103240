"""Training batches: HRDA crops drawn on the host, one batch ahead of the GPU.

Everything random about *which* pixels a step sees (image choice, rare class sampling,
context and detail boxes, flips) comes from one ``torch.Generator`` owned by
:class:`CropStream`. Each batch carries the generator state right after it was drawn, so
a checkpoint taken after step ``i`` stores exactly the state that draws batch ``i + 1``:
a resumed run sees the same batches as an uninterrupted one, although a background
thread prepares batches ahead of time to keep decoding off the critical path.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from hrda_kedro.hrda.crops import Box, sample_box
from hrda_kedro.hrda.uda.pseudo_labels import scale_margins
from hrda_kedro.hrda.uda.rcs import MAX_REDRAWS, RareClassSampler, select_crop_for_class

IGNORE_INDEX = 255


@dataclass
class CropBatch:
    """A batch of HR context crops with their detail boxes, still on the host."""

    images: torch.Tensor  # uint8 (B, 3, sH, sW)
    labels: torch.Tensor | None  # int64 (B, sH, sW)
    weights: torch.Tensor | None  # float (B, sH, sW), offline pseudo-label confidence
    context_boxes: list[Box]
    detail_boxes: list[Box]
    image_sizes: list[tuple[int, int]]
    flipped: list[bool]
    generator_state: torch.Tensor

    def pinned(self) -> CropBatch:
        """A copy whose tensors live in page-locked memory."""
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731 - local shorthand
        return dataclasses.replace(
            self, images=pin(self.images), labels=pin(self.labels), weights=pin(self.weights)
        )


@dataclass
class CropSpec:
    context_hw: tuple[int, int]
    detail_hw: tuple[int, int]
    align: int
    flip: bool
    cat_max_ratio: float = 1.0
    """Labelled crops: re-drawn while one class covers this share of the labelled pixels or
    more (mmseg's RandomCrop; the official configs use 0.75 on the source); 1 turns it off."""


def is_class_balanced(
    label_crop: torch.Tensor, cat_max_ratio: float, ignore_index: int = IGNORE_INDEX
) -> bool:
    """mmseg RandomCrop's test: at least two labelled classes, none covering ``cat_max_ratio``
    or more of the labelled (not ignored) pixels."""
    values = label_crop[label_crop != ignore_index]
    if values.numel() == 0:
        return False
    counts = torch.bincount(values.flatten())
    counts = counts[counts > 0]
    return len(counts) > 1 and int(counts.max()) / int(counts.sum()) < cat_max_ratio


def redraw_unbalanced_crop(
    label: torch.Tensor,
    sample_crop: Callable[[], Box],
    cat_max_ratio: float,
) -> Box:
    """A crop of ``label`` re-drawn, up to ``MAX_REDRAWS`` times, while one class dominates it.

    As mmseg's RandomCrop with ``cat_max_ratio``: the first draw that passes
    :func:`is_class_balanced` is kept, and after ``MAX_REDRAWS`` failed tests the last
    (untested) draw, so at most ``MAX_REDRAWS + 1`` draws. ``cat_max_ratio >= 1`` draws once.
    """
    box = sample_crop()
    if cat_max_ratio >= 1.0:
        return box
    for _ in range(MAX_REDRAWS):
        if is_class_balanced(box.crop(label), cat_max_ratio):
            return box
        box = sample_crop()
    return box


class CropStream:
    """Draws HRDA crop batches from a segmentation dataset.

    ``dataset[i]`` returns a dict with ``image`` (uint8 ``(3, H, W)``) and optionally
    ``label`` (int64 ``(H, W)``) and ``weight`` (float ``(H, W)``).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        spec: CropSpec,
        generator: torch.Generator,
        rare_class_sampler: RareClassSampler | None = None,
        rcs_min_crop_pixels: float | None = None,
        decode_threads: int = 1,
    ) -> None:
        self.dataset = dataset
        # Decoding (Pillow releases the GIL) runs on these threads; every random draw stays
        # on the calling thread in a fixed order, so batches do not depend on the count.
        self._pool = ThreadPoolExecutor(decode_threads) if decode_threads > 1 else None
        self.batch_size = batch_size
        self.spec = spec
        self.generator = generator
        self.rcs = rare_class_sampler
        self.rcs_min_crop_pixels = rcs_min_crop_pixels

    def _draw_index(self) -> tuple[int, int | None]:
        if self.rcs is not None:
            index, class_id = self.rcs.sample()
            return int(index), int(class_id)
        return int(torch.randint(len(self.dataset), (1,), generator=self.generator)), None

    def _context_box(
        self, image_hw: tuple[int, int], label: torch.Tensor | None, class_id: int | None
    ) -> Box:
        """The context box, with the official source-crop rules in their official order.

        Every rare-class try draws a whole crop with its ``cat_max_ratio`` re-draws (the
        official code re-runs its pipeline, RandomCrop included, per try); the detail box is
        drawn afterwards inside the kept context crop, free of either rule, as HRDA draws it
        in the segmentor.
        """
        spec = self.spec

        def draw() -> Box:
            return sample_box(image_hw, spec.context_hw, spec.align, self.generator)

        if label is None:
            return draw()

        def balanced() -> Box:
            return redraw_unbalanced_crop(label, draw, spec.cat_max_ratio)

        if class_id is None or self.rcs_min_crop_pixels is None:
            return balanced()
        return select_crop_for_class(label, class_id, balanced, self.rcs_min_crop_pixels)

    def _crop_sample(self, item: dict[str, Any], class_id: int | None) -> dict[str, Any]:
        image = item["image"]
        height, width = image.shape[-2:]
        spec = self.spec
        context = self._context_box((height, width), item.get("label"), class_id)
        detail = sample_box(spec.context_hw, spec.detail_hw, spec.align, self.generator)
        flip = spec.flip and bool(torch.rand((), generator=self.generator) < 0.5)
        crops = {"image": context.crop(image)}
        for key in ("label", "weight"):
            if item.get(key) is not None:
                crops[key] = context.crop(item[key])
        if flip:
            crops = {key: value.flip(-1) for key, value in crops.items()}
        return {
            **crops,
            "context": context,
            "detail": detail,
            "size": (height, width),
            "flipped": flip,
        }

    def next_batch(self) -> CropBatch:
        draws = [self._draw_index() for _ in range(self.batch_size)]
        indices = [index for index, _ in draws]
        if self._pool is None:
            items = [self.dataset[i] for i in indices]
        else:
            items = list(self._pool.map(self.dataset.__getitem__, indices))
        samples = [
            self._crop_sample(item, class_id)
            for item, (_, class_id) in zip(items, draws, strict=True)
        ]
        stack = lambda key: (  # noqa: E731 - local shorthand
            torch.stack([s[key] for s in samples]) if key in samples[0] else None
        )
        return CropBatch(
            images=stack("image"),
            labels=stack("label"),
            weights=stack("weight"),
            context_boxes=[s["context"] for s in samples],
            detail_boxes=[s["detail"] for s in samples],
            image_sizes=[s["size"] for s in samples],
            flipped=[s["flipped"] for s in samples],
            # Shared with the rare class sampler: this state resumes both.
            generator_state=self.generator.get_state().clone(),
        )


class Prefetcher:
    """Runs ``produce`` in a background thread, ``depth`` results ahead of the consumer.

    The thread runs torch's CPU operators on one thread. With OpenMP each thread that runs a
    parallel operator gets a team of its own, so a producer stacking and flipping crops
    next to the training step put two teams on the cores: a warmup step on 2 cores took
    0.49-0.54 s instead of 0.31-0.33 s (docs/performance.md). ``torch.set_num_threads`` in
    the thread also changes the count threads started later begin with (the decode pool's,
    which is wanted); :meth:`close` puts the caller's count back.
    """

    def __init__(self, produce: Callable[[], Any], depth: int = 2) -> None:
        self._produce = produce
        self._intra_op_threads = torch.get_num_threads()
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hrda-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        torch.set_num_threads(1)
        while not self._stop.is_set():
            try:
                item: Any = self._produce()
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def get(self) -> Any:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        torch.set_num_threads(self._intra_op_threads)


def border_margin_weights(
    batch: CropBatch,
    margins: tuple[int, int, int, int],
    reference_hw: tuple[int, int] | None = None,
) -> torch.Tensor:
    """0/1 weights that zero the image-border bands (top, bottom, left, right) in each crop.

    The margins live in whole-image coordinates (the ego-car hood is at the bottom of the
    *image*), so each crop is compared against its own position in its image, as the
    official ``valid_pseudo_mask`` is built on the whole image and then cropped. With
    ``reference_hw`` the margins are given at that (H, W) and scaled to *each* image's size.
    """
    _, _, crop_h, crop_w = batch.images.shape
    rows = torch.arange(crop_h)
    cols = torch.arange(crop_w)
    masks = []
    for box, (height, width), flipped in zip(
        batch.context_boxes, batch.image_sizes, batch.flipped, strict=True
    ):
        top, bottom, left, right = (
            margins
            if reference_hw is None
            else scale_margins((height, width), margins, reference_hw)
        )
        r = rows + box.top
        c = cols + box.left
        keep_r = (r >= top) & (r < height - bottom)
        keep_c = (c >= left) & (c < width - right)
        if flipped:  # the crop was mirrored after cropping
            keep_c = keep_c.flip(0)
        masks.append(keep_r[:, None] & keep_c[None, :])
    return torch.stack(masks).float()
