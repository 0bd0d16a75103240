"""Mean teacher: an exponential moving average of the student that makes the pseudo-labels.

Averaging the student's weights over time gives a teacher whose predictions change slowly
and are more accurate than the student's, which stabilises self-training.

Differences from the official DAFormer/HRDA code (deliberate):

- Buffers (BatchNorm running statistics, ``num_batches_tracked``) are *copied* from the
  student at every update. The official code averages only parameters and leaves the
  teacher's buffers at their initial values, then runs the teacher's BatchNorm in train
  mode (batch statistics). Our teacher always runs in eval mode (dropout and drop-path
  off), so its BatchNorm uses running statistics; copying the student's keeps them
  consistent with the averaged weights.
- The update is two fused ``torch._foreach`` kernels over all tensors, no per-parameter
  Python arithmetic and no host synchronisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / ``torch.compile``.

    Wrappers prefix every parameter name and the compiled wrapper is not deep-copyable, so
    the teacher is always built from, and averaged against, the bare module.
    """
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


class EMATeacher:
    """A frozen copy of the student, updated as an exponential moving average.

    ``update(student, t)`` uses ``alpha_t = min(1 - 1 / (t + 1), alpha)``: at ``t = 0``
    ``alpha_0 = 0`` and the teacher becomes an exact copy of the student; early on the
    average is a plain mean of the iterates seen so far, later it saturates at ``alpha``.
    The official schedule calls it once per iteration *before* making pseudo-labels, so the
    teacher at step ``t`` averages the students up to the end of step ``t - 1``.

    The teacher stays in eval mode and never requires gradients; do not call
    ``teacher.model.train()``.
    """

    def __init__(self, student: nn.Module, alpha: float = 0.999) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
        self.alpha = alpha
        self.model = copy.deepcopy(unwrap_model(student))
        self.model.eval()
        self.model.requires_grad_(False)

    def alpha_at(self, iteration: int) -> float:
        """The averaging factor used at ``iteration`` (0-based)."""
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        return min(1.0 - 1.0 / (iteration + 1), self.alpha)

    @torch.no_grad()
    def update(self, student: nn.Module, iteration: int) -> None:
        """``teacher = alpha_t * teacher + (1 - alpha_t) * student``; buffers copied."""
        alpha_t = self.alpha_at(iteration)
        student = unwrap_model(student)
        teacher_params = list(self.model.parameters())
        student_params = [p.detach() for p in student.parameters()]
        teacher_buffers = list(self.model.buffers())
        student_buffers = list(student.buffers())
        if len(teacher_params) != len(student_params) or len(teacher_buffers) != len(
            student_buffers
        ):
            raise ValueError(
                "student does not match the teacher: "
                f"{len(student_params)} parameters / {len(student_buffers)} buffers, "
                f"teacher has {len(teacher_params)} / {len(teacher_buffers)}"
            )
        if teacher_params:
            # lerp(t, s, w) = t + w * (s - t); at w = 1 it returns s exactly.
            torch._foreach_lerp_(teacher_params, student_params, 1.0 - alpha_t)
        if teacher_buffers:
            torch._foreach_copy_(teacher_buffers, student_buffers)
