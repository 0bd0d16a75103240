"""HRDA in plain PyTorch: crops, networks, fusion, losses, inference, metrics, self-training.

Nothing in this package imports Kedro, so the method can be used, tested and profiled on
its own; the Kedro pipelines only move catalog datasets through it.
"""

from __future__ import annotations

import functools

import torch

IGNORE_INDEX = 255
# ImageNet statistics on 0-255 RGB, the normalisation the MiT/ResNet weights were trained with.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@functools.cache
def _statistics(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std on ``device``, made once: a fresh host-to-device copy per call would
    stall the training step on a GPU."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1).to(device)
    std = torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1).to(device)
    return mean, std


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 or 0-255 float images ``(B, 3, H, W)`` to normalised float32."""
    mean, std = _statistics(images.device, torch.float32)
    return (images.float() - mean) / std


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, returning 0-255 float images."""
    mean, std = _statistics(images.device, images.dtype)
    return images * std + mean
