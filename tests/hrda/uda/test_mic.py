"""MIC: block masks, the masked-image loss, and its place in the self-training step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hrda_kedro.hrda.training.trainer as trainer_module
import hrda_kedro.hrda.uda.mic as mic_module
import hrda_kedro.hrda.uda.teacher as teacher_module
from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.crops import sample_box
from hrda_kedro.hrda.losses import hrda_loss
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.training.student import Student
from hrda_kedro.hrda.uda.batches import border_margin_weights
from hrda_kedro.hrda.uda.mic import (
    MaskingConfig,
    block_mask,
    masked_consistency_loss,
    scale_block_size,
)
from hrda_kedro.params import ParameterError, SelfTrainingParams, parse
from hrda_kedro.runtime.models import build_model
from tests.hrda.training.test_trainer import MODEL, SELF_TRAINING, _Interrupt, _trainer
from tests.tiny_data import TinySegmentationSet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_block_mask_keeps_the_share_of_cells_above_the_ratio() -> None:
    generator = torch.Generator().manual_seed(0)
    keep = block_mask((1600, 1600), [8, 8], 0.7, generator)  # 2 x 200 x 200 cells
    cells = keep[:, :, ::8, ::8]
    assert cells.shape == (2, 1, 200, 200)
    assert abs(cells.mean().item() - 0.3) < 0.01  # 80,000 draws: sd 0.0016
    assert set(keep.unique().tolist()) == {0.0, 1.0}


def test_block_mask_cells_are_aligned_blocks_upsampled_with_nearest() -> None:
    generator = torch.Generator().manual_seed(1)
    keep = block_mask((48, 64), [16], 0.5, generator)
    replay = torch.Generator().manual_seed(1)
    cells = (torch.rand(1, 1, 3, 4, generator=replay) > 0.5).float()
    expected = cells.repeat_interleave(16, dim=2).repeat_interleave(16, dim=3)
    assert torch.equal(keep, expected)


def test_block_grid_uses_python_rounding_of_side_over_block() -> None:
    # Official: round(H / b) cells per side; round(2.5) == 2, round(3.5) == 4.
    for side, cells in ((40, 2), (56, 4), (100, 6), (8, 1)):
        generator = torch.Generator().manual_seed(2)
        keep = block_mask((side, side), [16], 0.5, generator)
        replay = torch.Generator().manual_seed(2)
        draws = (torch.rand(1, 1, cells, cells, generator=replay) > 0.5).float()
        expected = torch.nn.functional.interpolate(draws, size=(side, side), mode="nearest")
        assert torch.equal(keep, expected), side


def test_block_size_scales_with_the_image_as_margins_do() -> None:
    assert scale_block_size((1024, 2048), 64, (1024, 2048)) == 64  # Cityscapes: official
    assert scale_block_size((256, 512), 64, (1024, 2048)) == 16  # embedded benchmark
    assert scale_block_size((1080, 1920), 64, (1024, 2048)) == 64  # ACDC / Dark Zurich
    assert scale_block_size((8, 8), 64, (1024, 2048)) == 1
    assert (
        MaskingConfig(mask_block_size=20, mask_block_reference_size=None).block_size_for((99, 99))
        == 20
    )


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(parse(ModelConfig, MODEL, "model"))


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    labels = torch.randint(0, 19, (2, 64, 64), generator=generator)
    weights = torch.full((2, 64, 64), 0.75)
    weights[:, :4] = 0.0  # a zeroed margin band, as the trainer passes them
    return images, labels, weights


def _student(model: torch.nn.Module, forward_train=None) -> Student:
    return Student(model, 0.1, DeviceSetup(torch.device("cpu")), forward_train)


def _mic(model: torch.nn.Module, config: MaskingConfig, seed: int = 9):
    images, labels, weights = _inputs()
    return masked_consistency_loss(
        _student(model),
        images,
        labels,
        weights,
        [(64, 64), (64, 64)],
        config=config,
        generator=torch.Generator().manual_seed(seed),
    )


def test_loss_is_the_hrda_loss_of_the_masked_image_with_the_given_pseudo_labels() -> None:
    model = _tiny_model().train()
    config = MaskingConfig(
        mask_block_size=16, mask_block_reference_size=None, mask_ratio=0.7, augment=False
    )
    images, labels, weights = _inputs()
    replay = torch.Generator().manual_seed(9)
    cells = (torch.rand(1, 1, 4, 4, generator=replay) > 0.7).float()
    cells2 = (torch.rand(1, 1, 4, 4, generator=replay) > 0.7).float()
    keep = torch.cat([cells, cells2]).repeat_interleave(16, 2).repeat_interleave(16, 3)
    align = model.scale * model.output_stride
    boxes = [sample_box((64, 64), model.detail_hw, align, replay) for _ in range(2)]
    torch.manual_seed(0)  # dropout draws: the same for both passes
    expected, expected_terms = hrda_loss(model(images * keep, boxes), labels, boxes, weights, 0.1)
    torch.manual_seed(0)
    loss, terms = _mic(model, config)
    assert torch.equal(loss, expected)
    assert expected_terms.keys() == {"fused", "detail"}
    assert terms.keys() == {"mic", "mic_fused", "mic_detail"}
    assert torch.equal(terms["mic"], loss.detach())


def test_lambda_scales_the_whole_masked_loss() -> None:
    model = _tiny_model().eval()
    one, _ = _mic(model, MaskingConfig(mask_block_size=16, mask_block_reference_size=None))
    half, _ = _mic(
        model, MaskingConfig(mask_block_size=16, mask_block_reference_size=None, loss_weight=0.5)
    )
    assert torch.allclose(half, 0.5 * one, rtol=0, atol=1e-7)


def test_masked_pixels_are_the_normalised_mean_and_kept_pixels_untouched() -> None:
    seen: list[torch.Tensor] = []

    def record(images: torch.Tensor, boxes: list) -> object:
        seen.append(images)
        return model(images, boxes)

    model = _tiny_model().eval()
    images, labels, weights = _inputs()
    masked_consistency_loss(
        _student(model, record),
        images,
        labels,
        weights,
        [(64, 64)] * 2,
        config=MaskingConfig(mask_block_size=16, mask_block_reference_size=None, augment=False),
        generator=torch.Generator().manual_seed(3),
    )
    (masked,) = seen
    zero = (masked == 0).all(dim=1)
    assert 0 < zero.float().mean() < 1
    for i in range(2):
        kept = ~zero[i]
        assert torch.equal(masked[i][:, kept], images[i][:, kept])


def test_gradients_reach_the_student_only() -> None:
    student = _tiny_model().train()
    teacher = _tiny_model().eval().requires_grad_(False)
    images, _, _ = _inputs()
    with torch.no_grad():
        logits = teacher.predict_window(images).fused
    pseudo = logits.argmax(1).repeat_interleave(4, 1).repeat_interleave(4, 2)
    loss, _ = masked_consistency_loss(
        _student(student),
        images,
        pseudo,
        torch.ones(2, 64, 64),
        [(64, 64)] * 2,
        config=MaskingConfig(mask_block_size=16, mask_block_reference_size=None),
        generator=torch.Generator().manual_seed(4),
    )
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in student.network.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


MIC_ON = {
    **SELF_TRAINING,
    "mic": {"enabled": True, "mask_block_size": 16, "mask_block_reference_size": None},
}


def test_step_feeds_mic_the_unmasked_crop_and_the_mix_pseudo_labels(monkeypatch) -> None:
    made: list[tuple[torch.Tensor, torch.Tensor]] = []
    given: list[dict] = []
    make, mic = teacher_module.make_pseudo_labels, mic_module.masked_consistency_loss

    def spy_make(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    def spy_mic(student, images, labels, weights, image_sizes, **kwargs):
        given.append({"images": images, "labels": labels, "weights": weights})
        return mic(student, images, labels, weights, image_sizes, **kwargs)

    monkeypatch.setattr(teacher_module, "make_pseudo_labels", spy_make)
    monkeypatch.setattr(trainer_module, "masked_consistency_loss", spy_mic)
    # Threshold 0: every pixel confident, so the weights are 1 but for the zeroed margins.
    pseudo = {**MIC_ON["pseudo_labels"], "threshold": 0.0}
    config = {**MIC_ON, "iterations": 1, "pseudo_labels": pseudo}
    params = parse(SelfTrainingParams, config, "self_training")
    trainer = _trainer(params, TinySegmentationSet(6, seed=2, with_labels=False))
    source, target = trainer.draw()
    terms = trainer.step(source, target)

    assert len(made) == len(given) == 1
    labels, weights = made[0]
    assert given[0]["labels"] is labels  # the teacher's labels of the unmasked crop
    margins = border_margin_weights(target, tuple(pseudo["margins"]))
    assert 0 < margins.mean() < 1
    assert torch.equal(given[0]["weights"], weights * margins)
    assert torch.equal(given[0]["images"], normalize(target.images.float()))
    assert {"mic", "mic_fused", "mic_detail"} <= terms.keys()
    assert torch.allclose(
        terms["loss"],
        terms["source_fused"] * 0.9
        + terms["source_detail"] * 0.1
        + terms["mix_fused"] * 0.9
        + terms["mix_detail"] * 0.1
        + terms["mic"],
    )


def test_disabled_mic_adds_no_pass_and_no_term(monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("MIC ran although disabled")

    monkeypatch.setattr(trainer_module, "masked_consistency_loss", never)
    params = parse(SelfTrainingParams, {**SELF_TRAINING, "iterations": 2}, "self_training")
    result = _trainer(params, TinySegmentationSet(6, seed=2, with_labels=False)).run()
    assert not any(k.startswith("mic") for row in result.history for k in row)


def test_interrupted_mic_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    params = parse(SelfTrainingParams, {**MIC_ON, "iterations": 4}, "self_training")
    target = TinySegmentationSet(6, seed=2, with_labels=False)
    uninterrupted = _trainer(params, target).run(tmp_path / "a.pt", "job")

    def kill_at_2(iteration: int) -> None:
        if iteration == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _trainer(params, target).run(tmp_path / "b.pt", "job", on_checkpoint=kill_at_2)
    resumed = _trainer(params, target).run(tmp_path / "b.pt", "job")
    for key, value in uninterrupted.model.items():
        assert torch.equal(value, resumed.model[key]), key
    assert [r["mic"] for r in resumed.history] == [r["mic"] for r in uninterrupted.history]


@pytest.mark.parametrize(
    ("mic", "message"),
    [
        ({"mask_ratio": 1.0}, "self_training.mic.mask_ratio: expected 0 <= ratio < 1"),
        ({"mask_block_size": 0}, "self_training.mic.mask_block_size: expected >= 1"),
        ({"lambda": -1}, "self_training.mic.lambda: expected >= 0"),
        ({"lamda": 1}, "did you mean 'lambda'"),
    ],
)
def test_bad_mic_parameters_name_the_key(mic: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse(SelfTrainingParams, {"mic": mic}, "self_training")


def test_lambda_is_read_from_its_yaml_key() -> None:
    params = parse(SelfTrainingParams, {"mic": {"lambda": 0.25}}, "self_training")
    assert params.mic.loss_weight == 0.25
