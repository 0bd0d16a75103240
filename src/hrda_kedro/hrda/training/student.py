"""The network being trained, as every loss pass of the step calls it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.model import HRDAModel, MultiResOutput
from hrda_kedro.hrda.training.devices import DeviceSetup


@dataclass
class Student:
    """The student's training forward (the model, or its data-parallel wrapper) under the
    stage's autocast, and what the HRDA loss of its outputs needs."""

    model: HRDAModel
    hr_loss_weight: float
    setup: DeviceSetup
    forward_train: Callable[[torch.Tensor, list[Box]], MultiResOutput] | None = None

    def __post_init__(self) -> None:
        if self.forward_train is None:  # HRDAModel.forward is the training pass
            self.forward_train = self.model

    @property
    def detail_hw(self) -> tuple[int, int]:
        return self.model.detail_hw

    @property
    def align(self) -> int:
        """Crops and boxes are aligned to ``scale x output stride``."""
        return self.model.scale * self.model.output_stride

    def __call__(self, images: torch.Tensor, boxes: list[Box]) -> MultiResOutput:
        assert self.forward_train is not None
        with record_function("forward"), self.setup.autocast():
            return self.forward_train(images, boxes)
