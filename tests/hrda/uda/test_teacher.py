"""The target crops' pseudo-labels: the teacher's (online) or the materialized ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.uda.batches import CropBatch
from hrda_kedro.hrda.uda.config import PseudoLabelConfig
from hrda_kedro.hrda.uda.ema import EMATeacher
from hrda_kedro.hrda.uda.teacher import teacher_pseudo_labels
from hrda_kedro.params import parse
from hrda_kedro.runtime.models import build_model
from tests.hrda.training.test_trainer import MODEL

CPU = DeviceSetup(torch.device("cpu"))
CONFIG = PseudoLabelConfig(threshold=0.0, margins=(8, 0, 0, 0), margins_reference_size=None)


def _batch(labels: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> CropBatch:
    images = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    return CropBatch(
        images=images.to(torch.uint8),
        labels=labels,
        weights=weights,
        context_boxes=[Box(0, 0, 64, 64), Box(16, 0, 64, 64)],
        detail_boxes=[Box(0, 0, 32, 32)] * 2,
        image_sizes=[(80, 64)] * 2,
        flipped=[False, False],
        generator_state=torch.Generator().get_state(),
    )


def test_online_labels_are_the_teachers_argmax_with_the_margins_zeroed() -> None:
    torch.manual_seed(0)
    teacher = EMATeacher(build_model(parse(ModelConfig, MODEL, "model")), alpha=0.99)
    batch = _batch()
    images = normalize(batch.images)
    labels, weights = teacher_pseudo_labels(teacher, batch, images, CONFIG, CPU)
    logits = teacher.model.predict_window(images).fused
    expected = F.interpolate(logits, size=(64, 64), mode="bilinear").argmax(1)
    assert torch.equal(labels, expected)
    # Image 0's crop starts at the top: its first 8 rows are margin; image 1's starts below.
    assert weights[0, :8].eq(0).all() and weights[0, 8:].eq(1).all()
    assert weights[1].eq(1).all()


def test_offline_labels_come_from_the_batch_weighted_by_their_confidence() -> None:
    labels = torch.randint(0, 19, (2, 64, 64))
    confidence = torch.full((2, 64, 64), 0.5)
    config = PseudoLabelConfig(threshold=0.9, margins=(0, 0, 0, 0), margins_reference_size=None)
    batch = _batch(labels, confidence)
    got, weights = teacher_pseudo_labels(None, batch, normalize(batch.images), config, CPU)
    assert torch.equal(got, labels) and weights.eq(0).all()  # nothing above 0.9
    with pytest.raises(ValueError, match="none were materialized"):
        teacher_pseudo_labels(None, _batch(), normalize(batch.images), config, CPU)


def test_the_teacher_runs_no_more_crops_per_call_than_the_students_pass() -> None:
    """Pseudo-labels of B images (1 LR window + 9 HR crops each) run in network calls of at
    most 2B crops, what the student's pass holds at once, so making them never sets the
    step's memory peak; the labels are those of one call over all crops."""
    torch.manual_seed(0)
    teacher = EMATeacher(build_model(parse(ModelConfig, MODEL, "model")), alpha=0.99)
    batch = _batch()
    images = normalize(batch.images)
    network = teacher.model.network
    calls: list[int] = []
    extract = network.extract

    def counted(x: torch.Tensor) -> list[torch.Tensor]:
        calls.append(x.shape[0])
        return extract(x)

    network.extract = counted  # type: ignore[method-assign]
    labels, _ = teacher_pseudo_labels(teacher, batch, images, CONFIG, CPU)
    assert max(calls) == 4 and sum(calls) == 2 * (1 + 9)
    calls.clear()
    with torch.no_grad():
        one_call = teacher.model.predict_window(images).fused
    assert calls == [20]
    expected = F.interpolate(one_call, size=(64, 64), mode="bilinear").argmax(1)
    assert torch.equal(labels, expected)
