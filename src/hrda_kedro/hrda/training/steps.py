"""The step's source loss, its bookkeeping of loss terms, and the optimiser update."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.profiler import record_function

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.losses import hrda_loss
from hrda_kedro.hrda.model import MultiResOutput
from hrda_kedro.hrda.training.student import Student

Terms = dict[str, torch.Tensor]
Regularizer = Callable[[torch.Tensor, MultiResOutput, torch.Tensor], torch.Tensor]


class StepLosses:
    """Each pass's backward, and its detached loss and terms for the history (on the
    device: nothing here reads a value back)."""

    def __init__(self) -> None:
        self.terms: Terms = {}
        self._losses: list[torch.Tensor] = []

    def backward(self, loss: torch.Tensor, terms: Terms) -> None:
        with record_function("backward"):
            loss.backward()
        self.terms.update(terms)
        self._losses.append(loss.detach())

    def total(self) -> torch.Tensor:
        """Sum of the passes' losses, ``source + (mix + mic)``: the grouping the history's
        ``loss`` always had, so it stays bit-identical."""
        return reduce(lambda rest, loss: loss + rest, reversed(self._losses))


def source_loss(
    student: Student,
    images: torch.Tensor,
    labels: torch.Tensor,
    boxes: list[Box],
    feature_distance: Regularizer | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, Terms]:
    """HRDA loss of the source crops, plus the ImageNet feature distance when given.

    ``augment`` (the source-only warmup's colour jitter and blur, when configured) changes
    the images the student sees, not those the feature distance compares."""
    seen = images if augment is None else student.setup.layout(augment(images))
    out = student(seen, boxes)
    loss, terms = hrda_loss(out, labels, boxes, None, student.hr_loss_weight)
    named = {f"source_{k}": v for k, v in terms.items()}
    if feature_distance is not None:
        distance = feature_distance(images, out, labels)
        loss = loss + distance
        named["feature_distance"] = distance.detach()
    return loss, named


def optimizer_update(
    model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler, grad_clip: float | None
) -> None:
    """Clip (when set), step the optimiser, step the lr schedule."""
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
