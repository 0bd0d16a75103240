"""The training stages' data sets, and the checks of their images before the first step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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
    manifest: pd.DataFrame, class_pixel_counts: pd.DataFrame, train: TrainingConfig
) -> tuple[ManifestDataset, np.ndarray]:
    """Labelled source images and their per-image class pixel counts (for RCS)."""
    counts = class_pixel_counts[list(CITYSCAPES_CLASSES)].to_numpy(dtype=np.int64)
    if len(counts) != len(manifest):
        raise ValueError(
            f"source_class_pixel_counts has {len(counts)} rows but source_train_manifest "
            f"{len(manifest)}: re-run the ingestion pipeline"
        )
    return ManifestDataset(manifest, labels=True, cache=train.cache_images), counts


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


def partition_id(image_path: str) -> str:
    """Partition name of an image's pseudo-label files: its file stem."""
    return Path(image_path).name.rsplit(".", 1)[0]


def target_dataset(
    manifest: pd.DataFrame,
    pseudo_labels: dict[str, Callable[[], Image.Image]] | None,
    cache: bool,
) -> Dataset:
    """Target-train images without their labels; with pseudo-labels in offline mode."""
    images = ManifestDataset(manifest, labels=False, cache=cache)
    if pseudo_labels is None:
        return images
    ids = [partition_id(p) for p in manifest["image_path"]]
    return PseudoLabelledDataset(images, ids, pseudo_labels)


def image_dataset(manifest: pd.DataFrame) -> ManifestDataset:
    return ManifestDataset(manifest, labels=False)


def labelled_dataset(manifest: pd.DataFrame) -> ManifestDataset:
    return ManifestDataset(manifest, labels=True)


def read_label(path: str) -> torch.Tensor:
    """A trainId label PNG as an int64 tensor."""
    with Image.open(path) as file:
        return torch.from_numpy(np.asarray(file).astype(np.int64))
