"""HRDA in plain PyTorch: crops, networks, fusion, losses, inference, metrics, self-training.

Nothing in this package imports Kedro, so the method can be used, tested and profiled on
its own; the Kedro pipelines only move catalog datasets through it.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = 255
# ImageNet statistics on 0-255 RGB, the normalisation the MiT/ResNet weights were trained with.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 or 0-255 float images ``(B, 3, H, W)`` to normalised float32."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, returning 0-255 float images."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return images * std + mean
