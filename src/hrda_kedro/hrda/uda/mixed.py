"""The student's loss on mixed crops: ClassMix pastes source classes onto the target crop,
strong augmentation follows, and the pixel-weighted HRDA loss learns the pseudo-labels."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.losses import hrda_loss
from hrda_kedro.hrda.training.student import Student
from hrda_kedro.hrda.uda.classmix import classmix_masks, mix_batch
from hrda_kedro.hrda.uda.teacher import PseudoLabels

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def mixed_target_loss(
    student: Student,
    source_images: torch.Tensor,
    source_labels: torch.Tensor,
    target_images: torch.Tensor,
    target_boxes: list[Box],
    pseudo: PseudoLabels,
    *,
    classmix: bool,
    augment: Augment,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """HRDA loss of the student on the mixed (or, without ClassMix, the target) crops and
    its detached terms, with the mean pseudo-label weight. Target crop ``i`` is paired with
    source crop ``i mod B_s``; every draw comes from ``generator``."""
    n = target_images.shape[0]
    if n != source_images.shape[0]:
        pair = torch.arange(n, device=target_images.device) % source_images.shape[0]
        source_images, source_labels = source_images[pair], source_labels[pair]
    if classmix:
        masks = classmix_masks(source_labels, generator)
        images, labels, weights = mix_batch(
            masks, source_images, target_images, source_labels, *pseudo
        )
    else:
        images, labels, weights = target_images, *pseudo
    images = student.setup.layout(augment(images, generator))
    out = student(images, target_boxes)
    loss, terms = hrda_loss(out, labels, target_boxes, weights, student.hr_loss_weight)
    named = {f"mix_{k}": v for k, v in terms.items()}
    named["pseudo_weight"] = pseudo.weights.detach().mean()
    return loss, named
