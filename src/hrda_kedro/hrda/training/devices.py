"""Where a stage's step runs and with which numeric format."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from hrda_kedro.hrda import normalize

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass
class DeviceSetup:
    """The device, the autocast dtype (None: fp32), the memory layout of images, and
    whether a CPU self-training step runs the EMA teacher in a thread of its own next to
    the source pass (:mod:`hrda_kedro.hrda.training.teacher_thread`; ignored on a GPU), and
    how many images whole-image prediction computes at once
    (:mod:`hrda_kedro.hrda.image_streams`)."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    teacher_thread: bool = False
    predict_streams: int = 1

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` host images -> normalised images on the device, in the step's layout."""
        return self.layout(normalize(images.to(self.device, non_blocking=True)))

    def labels(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.to(self.device, non_blocking=True)

    def place(self, model: ModuleT) -> ModuleT:
        """``model`` on the device, in the configured memory layout (training and every
        whole-image prediction alike)."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def layout(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images
