"""Segmentation networks for HRDA: DAFormer (MiT + context-aware fusion) and DeepLabV2."""

from __future__ import annotations

from hrda_kedro.hrda.model_config import NetworkConfig

from .base import SegmentationNetwork
from .daformer import DAFormerNetwork
from .deeplabv2 import DeepLabV2Network

__all__ = [
    "DAFormerNetwork",
    "DeepLabV2Network",
    "NetworkConfig",
    "SegmentationNetwork",
    "build_network",
]


def build_network(config: NetworkConfig) -> SegmentationNetwork:
    """The network ``config`` describes, with its encoder's local pretrained weights loaded."""
    if config.architecture == "daformer":
        return DAFormerNetwork(config)
    return DeepLabV2Network(config)
