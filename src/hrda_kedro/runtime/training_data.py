"""The training stages' data sets, and the checks of their images before the first step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.data.torch_datasets import ManifestDataset
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.hrda.training.streams import rcs_min_pixels
from hrda_kedro.hrda.uda.config import PseudoLabelConfig
from hrda_kedro.params import ParameterError, check_margins

LABEL_SUFFIX = "_label"
CONFIDENCE_SUFFIX = "_confidence"


def check_images_fit(
    manifest: pd.DataFrame, model: ModelConfig, split: str, margins: PseudoLabelConfig | None = None
) -> None:
    """Before the first step: the context crop fits in every image (and the margins leave
    pixels of it), for data sets whose sizes only their manifests know (folders)."""
    if not len(manifest):
        return
    heights, widths = manifest["load_height"].astype(int), manifest["load_width"].astype(int)
    smallest = (int(heights.min()), int(widths.min()))
    crop = model.hrda.context_crop
    if crop[0] > smallest[0] or crop[1] > smallest[1]:
        at = int(((heights < crop[0]) | (widths < crop[1])).to_numpy().argmax())
        raise ParameterError(
            f"parameter model.hrda.context_crop: the context crop {list(crop)} (HxW) does not "
            f"fit in {manifest['image_path'].iloc[at]} of {split}, loaded at "
            f"{heights.iloc[at]}x{widths.iloc[at]}; expected at most the smallest image "
            f"({smallest[0]}x{smallest[1]}): lower the crop or resize the data set"
        )
    if margins is not None and margins.margins_reference_size is None:
        check_margins(
            margins.margins, smallest, "self_training.pseudo_labels", f" of {split} (smallest)"
        )


def source_datasets(
    manifest: pd.DataFrame, class_pixel_counts: pd.DataFrame, train: TrainingConfig, group: str
) -> tuple[ManifestDataset, np.ndarray]:
    """Labelled source images and their per-image class pixel counts (for RCS), once rare
    class sampling (the settings of parameter group ``group``) has a class to draw."""
    counts = class_counts(class_pixel_counts)
    if len(counts) != len(manifest):
        raise ValueError(
            f"source_class_pixel_counts has {len(counts)} rows but source_train_manifest "
            f"{len(manifest)}: re-run the ingestion pipeline"
        )
    check_rare_class_sampling(manifest, counts, train, group)
    return ManifestDataset(manifest, labels=True, cache=train.cache_images), counts


def class_counts(class_pixel_counts: pd.DataFrame) -> np.ndarray:
    """``(N, C)`` pixel counts per source image and class, from ingestion's table."""
    return class_pixel_counts[list(CITYSCAPES_CLASSES)].to_numpy(dtype=np.int64)


def check_rare_class_sampling(
    manifest: pd.DataFrame, counts: np.ndarray, train: TrainingConfig, group: str
) -> None:
    """Some source image must hold ``min_pixels`` (scaled to the images' size) of a class:
    found by the sampler, the mistake named no setting and showed only the scaled value."""
    rcs = train.rare_class_sampling
    if not rcs.enabled or not len(manifest):
        return
    image_hw = (int(manifest["load_height"].iloc[0]), int(manifest["load_width"].iloc[0]))
    least = rcs_min_pixels(rcs, image_hw)
    if (counts >= least).any():
        return
    scaled = (
        ""
        if rcs.reference_size is None
        else f" ({rcs.min_pixels} at {rcs.reference_size[0]}x{rcs.reference_size[1]}, scaled "
        f"to the source images' {image_hw[0]}x{image_hw[1]})"
    )
    raise ParameterError(
        f"parameter {group}.rare_class_sampling.min_pixels: no source image holds {least} "
        f"pixels of any class{scaled}; expected at most {int(counts.max())}, the most any "
        f"image holds of one class (or {group}.rare_class_sampling.enabled: false)"
    )


class PseudoLabelledDataset(Dataset):
    """Target images with materialized pseudo-labels and confidences (offline mode)."""

    def __init__(
        self,
        images: ManifestDataset,
        partition_ids: list[str],
        partitions: dict[str, Callable[[], Image.Image]],
    ) -> None:
        missing = [pid for pid in partition_ids if pid + LABEL_SUFFIX not in partitions]
        if missing:
            raise ValueError(
                f"offline pseudo-labels: no materialized label for {len(missing)} target "
                f"images (first: {missing[0]}); re-run materialize_pseudo_labels"
            )
        self.images = images
        self.partition_ids = partition_ids
        self.partitions = partitions

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.images[index])
        pid = self.partition_ids[index]
        label = np.asarray(self.partitions[pid + LABEL_SUFFIX]())
        confidence = np.asarray(self.partitions[pid + CONFIDENCE_SUFFIX]())
        item["label"] = torch.from_numpy(label.astype(np.int64))
        item["weight"] = torch.from_numpy(confidence.astype(np.float32) / 255.0)
        return item


def partition_ids(manifest: pd.DataFrame) -> list[str]:
    """The partition names of the target images' pseudo-label files, in manifest order: the
    images' pair names, unique in a split. Unlike file stems, they keep a data set's
    subfolders (``train/cam1/0000``), so images of one file name in two folders (cameras,
    sequences, cities numbered from 0 each) get files of their own."""
    return [str(name) for name in manifest["name"]]


def target_dataset(
    manifest: pd.DataFrame,
    pseudo_labels: dict[str, Callable[[], Image.Image]] | None,
    cache: bool,
) -> Dataset:
    """Target-train images without their labels; with pseudo-labels in offline mode."""
    images = ManifestDataset(manifest, labels=False, cache=cache)
    if pseudo_labels is None:
        return images
    return PseudoLabelledDataset(images, partition_ids(manifest), pseudo_labels)


def image_dataset(manifest: pd.DataFrame) -> ManifestDataset:
    return ManifestDataset(manifest, labels=False)


def labelled_dataset(manifest: pd.DataFrame) -> ManifestDataset:
    return ManifestDataset(manifest, labels=True)


def read_label(path: str) -> torch.Tensor:
    """A trainId label PNG as an int64 tensor."""
    with Image.open(path) as file:
        return torch.from_numpy(np.asarray(file).astype(np.int64))
