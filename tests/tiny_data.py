"""A tiny learnable segmentation set shared by the training-loop tests.

Module level so that data-parallel worker processes (spawn) can unpickle it.
"""

from __future__ import annotations

import numpy as np
import torch


class TinySegmentationSet(torch.utils.data.Dataset):
    """Random 64x128 images whose label is a function of the red channel (trainIds 0, 3, 6, 9)."""

    def __init__(
        self, count: int, seed: int, with_labels: bool = True, with_weights: bool = False
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (count, 3, 64, 128), dtype=torch.uint8, generator=gen)
        self.labels = (self.images[:, 0].long() * 4 // 256) * 3
        self.with_labels = with_labels
        self.with_weights = with_weights

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"image": self.images[index]}
        if self.with_labels:
            item["label"] = self.labels[index]
        if self.with_weights:
            item["weight"] = torch.full(self.labels[index].shape, 0.99)
        return item

    def class_counts(self) -> np.ndarray:
        return np.stack([np.bincount(lbl.flatten().numpy(), minlength=19) for lbl in self.labels])
