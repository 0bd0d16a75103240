"""The step's loss bookkeeping and the source loss."""

from __future__ import annotations

import torch

from hrda_kedro.hrda.crops import sample_box
from hrda_kedro.hrda.losses import hrda_loss
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.training.steps import StepLosses, source_loss
from hrda_kedro.hrda.training.student import Student
from hrda_kedro.params import parse
from hrda_kedro.runtime.models import build_model
from tests.hrda.training.test_trainer import MODEL


def test_the_total_keeps_the_grouping_source_plus_target_passes() -> None:
    parts = [torch.tensor(v, requires_grad=True) for v in (1.0, 1e8, -1e8)]
    losses = StepLosses()
    for i, part in enumerate(parts):
        losses.backward(part * 1.0, {f"t{i}": part.detach()})
    assert losses.total() == 1.0  # 1 + (1e8 - 1e8); float32 (1 + 1e8) - 1e8 would be 0
    assert losses.terms.keys() == {"t0", "t1", "t2"}
    assert all(p.grad is not None and p.grad == 1.0 for p in parts)


def test_source_loss_adds_the_regularizer_and_names_its_terms() -> None:
    torch.manual_seed(0)
    model = build_model(parse(ModelConfig, MODEL, "model")).eval()
    student = Student(model, 0.1, DeviceSetup(torch.device("cpu")))
    images = torch.randn(1, 3, 64, 64)
    labels = torch.randint(0, 19, (1, 64, 64))
    boxes = [sample_box((64, 64), student.detail_hw, student.align, torch.Generator())]
    plain, terms = source_loss(student, images, labels, boxes)
    expected, _ = hrda_loss(model(images, boxes), labels, boxes, None, 0.1)
    assert torch.equal(plain, expected)
    assert terms.keys() == {"source_fused", "source_detail"}
    extra, terms = source_loss(student, images, labels, boxes, lambda *_: torch.tensor(0.25))
    assert torch.equal(extra, expected + 0.25) and terms["feature_distance"] == 0.25
