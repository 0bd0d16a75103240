"""The interface every segmentation network offers to HRDA."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class SegmentationNetwork(nn.Module, ABC):
    """Encoder + segmentation head + scale-attention head sharing one encoder pass.

    HRDA needs the three parts separately: the same features feed the class logits and,
    for the context crop, the scale attention.
    """

    num_classes: int
    output_stride: int
    # True when the encoder treats every sample alone in training mode too (no BatchNorm),
    # so HRDA may run the LR context and the HR detail crops through it in one call.
    batch_independent_encoder: bool = False

    @abstractmethod
    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of normalised images ``(B, 3, H, W)``, finest first."""

    @abstractmethod
    def segment(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Class logits ``(B, num_classes, H/o, W/o)``."""

    @abstractmethod
    def attend(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Scale-attention logits before the sigmoid, ``(B, num_classes or 1, H/o, W/o)``."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.segment(self.extract(images))
