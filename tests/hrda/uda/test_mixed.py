"""The mixed target loss: ClassMix of paired source crops, augmentation, weighted HRDA loss."""

from __future__ import annotations

import torch

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.training.student import Student
from hrda_kedro.hrda.uda.classmix import classmix_masks, mix_batch
from hrda_kedro.hrda.uda.mixed import mixed_target_loss
from hrda_kedro.hrda.uda.teacher import PseudoLabels
from hrda_kedro.params import parse
from hrda_kedro.runtime.models import build_model
from tests.hrda.training.test_trainer import MODEL


def _identity(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return images


def test_target_crop_i_is_mixed_with_source_crop_i_mod_the_source_batch() -> None:
    torch.manual_seed(0)
    model = build_model(parse(ModelConfig, MODEL, "model")).eval()
    seen: list[torch.Tensor] = []

    def record(images: torch.Tensor, boxes: list[Box]) -> object:
        seen.append(images)
        return model(images, boxes)

    student = Student(model, 0.1, DeviceSetup(torch.device("cpu")), record)
    gen = torch.Generator().manual_seed(1)
    src_images, tgt_images = torch.randn(2, 3, 64, 64, generator=gen), torch.randn(3, 3, 64, 64)
    src_labels = torch.randint(0, 19, (2, 64, 64), generator=gen)
    pseudo = PseudoLabels(torch.randint(0, 19, (3, 64, 64)), torch.full((3, 64, 64), 0.5))
    boxes = [Box(0, 0, 32, 32)] * 3
    _, terms = mixed_target_loss(
        student, src_images, src_labels, tgt_images, boxes, pseudo,
        classmix=True, augment=_identity, generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    pair = torch.tensor([0, 1, 0])
    masks = classmix_masks(src_labels[pair], torch.Generator().manual_seed(2))
    expected, _, _ = mix_batch(masks, src_images[pair], tgt_images, src_labels[pair], *pseudo)
    assert torch.equal(seen[0], expected)
    assert terms.keys() == {"mix_fused", "mix_detail", "pseudo_weight"}
    assert terms["pseudo_weight"] == 0.5
