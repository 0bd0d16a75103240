"""The stage's crop streams: source crops (rare class sampling, class-balance re-draws) and
target crops, one generator for both, so a resumed run draws the same batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from hrda_kedro.hrda.training.config import RareClassSamplingConfig, TrainingConfig
from hrda_kedro.hrda.uda.batches import CropSpec, CropStream
from hrda_kedro.hrda.uda.rcs import RareClassSampler, scale_min_pixels


@dataclass
class StageData:
    """A stage's data: labelled source images, with their per-image class pixel counts
    ``(N, C)`` for rare class sampling (``class_names`` name the classes in its log), and
    the target images a self-training stage adapts to."""

    source: Dataset
    target: Dataset | None = None
    class_pixel_counts: np.ndarray | None = None
    class_names: Sequence[str] | None = None


def source_stream(
    data: StageData, config: TrainingConfig, spec: CropSpec, generator: torch.Generator
) -> CropStream:
    """Source crops; rare class sampling when enabled and the class pixel counts are given."""
    rcs = config.rare_class_sampling
    sampler, min_crop = None, None
    if rcs.enabled and data.class_pixel_counts is not None:
        height, width = data.source[0]["image"].shape[-2:]
        min_pixels = rcs_min_pixels(rcs, (int(height), int(width)))
        sampler = RareClassSampler(
            torch.as_tensor(np.asarray(data.class_pixel_counts)),
            temperature=rcs.temperature,
            min_pixels=min_pixels,
            generator=generator,
            class_names=data.class_names,
        )
        if rcs.min_crop_ratio > 0:  # official: 0 keeps the first crop
            min_crop = min_pixels * rcs.min_crop_ratio
    return CropStream(
        data.source,
        config.source_batch_size,
        dataclasses.replace(spec, cat_max_ratio=config.cat_max_ratio),
        generator,
        rare_class_sampler=sampler,
        rcs_min_crop_pixels=min_crop,
        decode_threads=config.decode_threads,
    )


def target_stream(
    target: Dataset, config: TrainingConfig, spec: CropSpec, generator: torch.Generator
) -> CropStream:
    """Target crops: uniform, no class-balance rule (as in the official configs)."""
    return CropStream(
        target, config.target_batch_size, spec, generator, decode_threads=config.decode_threads
    )


def rcs_min_pixels(rcs: RareClassSamplingConfig, image_hw: tuple[int, int]) -> int:
    """``min_pixels`` for images of ``image_hw``: as given, or scaled from ``reference_size``."""
    if rcs.reference_size is None:
        return rcs.min_pixels
    return scale_min_pixels(image_hw, rcs.min_pixels, rcs.reference_size)
