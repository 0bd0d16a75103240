"""The training loop: resume equivalence, non-finite loss stop, both pseudo-label sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hrda_kedro.hrda.checkpoint import load_checkpoint
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.training.history import NonFiniteLossError
from hrda_kedro.hrda.training.streams import StageData
from hrda_kedro.hrda.training.trainer import Trainer
from hrda_kedro.params import SelfTrainingParams, parse
from hrda_kedro.runtime.models import build_model
from tests.tiny_data import TinySegmentationSet

MODEL = {
    "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
    "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
}


def _trainer(
    params: TrainingConfig,
    target: torch.utils.data.Dataset | None = None,
    autocast_dtype: torch.dtype | None = None,
    model: dict[str, Any] = MODEL,
    **kwargs: Any,
) -> Trainer:
    """Self-training (``params`` of the ``self_training`` group) when given a target."""
    model_params = parse(ModelConfig, model, "model")
    torch.manual_seed(0)
    source = TinySegmentationSet(6, seed=1)
    return Trainer(
        build_model(model_params),
        params,
        StageData(source, target, source.class_counts()),
        context_crop=model_params.hrda.context_crop,
        hr_loss_weight=model_params.hrda.hr_loss_weight,
        uda=params if target is not None else None,
        setup=DeviceSetup(torch.device("cpu"), autocast_dtype=autocast_dtype),
        seed=3,
        progress_bar=False,
        **kwargs,
    )


SELF_TRAINING = {
    "iterations": 6,
    "log_every": 2,
    "checkpoint_every": 2,
    "optimizer": {"lr": 1e-3, "warmup_iters": 2},
    "rare_class_sampling": {"min_pixels": 20, "reference_size": None},
    "pseudo_labels": {"margins": [2, 4, 2, 2], "margins_reference_size": None},
}


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    params = parse(SelfTrainingParams, SELF_TRAINING, "self_training")
    target = TinySegmentationSet(6, seed=2, with_labels=False)

    uninterrupted = _trainer(params, target).run(tmp_path / "a.pt", "job")

    def kill_at_4(iteration: int) -> None:
        if iteration == 4:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _trainer(params, target).run(tmp_path / "b.pt", "job", on_checkpoint=kill_at_4)
    assert load_checkpoint(tmp_path / "b.pt")["iteration"] == 4
    resumed = _trainer(params, target).run(tmp_path / "b.pt", "job")

    assert resumed.iterations == uninterrupted.iterations == 6
    for key, value in uninterrupted.model.items():
        assert torch.equal(value, resumed.model[key]), key
    for key, value in uninterrupted.teacher.items():
        assert torch.equal(value, resumed.teacher[key]), key
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in uninterrupted.history]


def test_finished_stage_is_not_trained_again(tmp_path: Path) -> None:
    params = parse(TrainingConfig, {"iterations": 2, "log_every": 1}, "warmup")
    first = _trainer(params).run(tmp_path / "s.pt", "job")
    again = _trainer(params)
    result = again.run(tmp_path / "s.pt", "job")
    assert result.iterations == 2
    assert all(torch.equal(first.model[k], result.model[k]) for k in first.model)


def test_changed_parameters_start_afresh(tmp_path: Path) -> None:
    params = parse(TrainingConfig, {"iterations": 2, "log_every": 1}, "warmup")
    _trainer(params).run(tmp_path / "s.pt", "job-a")
    trainer = _trainer(params)
    trainer.run(tmp_path / "s.pt", "job-b")
    assert len(trainer.history.rows) == 2  # not 4: the old state was not reused


def test_non_finite_loss_stops_with_iteration_and_term(tmp_path: Path, monkeypatch) -> None:
    params = parse(
        TrainingConfig, {"iterations": 6, "log_every": 1, "checkpoint_every": 1}, "warmup"
    )
    trainer = _trainer(params)
    real_step = trainer.step

    def poisoned(source, target):
        terms = real_step(source, target)
        if trainer.iteration == 2:  # 0-based: the third step
            terms["source_fused"] = torch.tensor(float("nan"))
        return terms

    monkeypatch.setattr(trainer, "step", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"'source_fused' is nan at iteration 3"):
        trainer.run(tmp_path / "s.pt", "job")
    assert load_checkpoint(tmp_path / "s.pt")["iteration"] == 2  # the last good one


def test_offline_pseudo_labels_train_without_teacher(tmp_path: Path) -> None:
    params = parse(
        SelfTrainingParams,
        {
            **SELF_TRAINING,
            "pseudo_labels": {
                "source": "offline",
                "margins": [2, 4, 2, 2],
                "margins_reference_size": None,
            },
        },
        "self_training",
    )
    target = TinySegmentationSet(6, seed=2, with_labels=True, with_weights=True)
    trainer = _trainer(params, target)
    result = trainer.run()
    assert trainer.teacher is None and result.teacher is None
    assert result.iterations == 6
    assert all(np.isfinite(r["mix_fused"]) for r in result.history)
    # confidence 0.99 >= 0.968 everywhere, so only the border margins lose weight
    assert all(r["pseudo_weight"] > 0.5 for r in result.history)


@pytest.mark.parametrize("mic", [False, True])
def test_self_training_runs_under_bf16_autocast(mic: bool) -> None:
    """``runtime.precision: bf16`` (the GPU default, allowed on a CPU): teacher, source,
    mix and MIC passes under autocast, their losses in float32 and the weights kept in
    float32. Every step raised a dtype error in the loss's backward before."""
    params = parse(
        SelfTrainingParams,
        {**SELF_TRAINING, "iterations": 3, "mic": {"enabled": mic}},
        "self_training",
    )
    trainer = _trainer(params, TinySegmentationSet(6, seed=2), autocast_dtype=torch.bfloat16)
    history = trainer.run().history
    assert len(history) == 3
    terms = ["loss", "source_fused", "mix_fused"] + (["mic_fused"] if mic else [])
    assert all(np.isfinite(r[term]) for r in history for term in terms)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_loss_decreases_on_a_learnable_task() -> None:
    params = parse(
        TrainingConfig,
        {
            "iterations": 40,
            "log_every": 10,
            "optimizer": {"lr": 2e-3, "warmup_iters": 5},
            "rare_class_sampling": {"enabled": False},
        },
        "warmup",
    )
    history = _trainer(params).run().history
    first = np.mean([r["loss"] for r in history[:5]])
    last = np.mean([r["loss"] for r in history[-5:]])
    assert last < 0.8 * first


def test_history_records_the_lr_each_step_used() -> None:
    params = parse(
        TrainingConfig,
        {"iterations": 6, "log_every": 3, "optimizer": {"lr": 1e-3, "warmup_iters": 0}},
        "warmup",
    )
    trainer = _trainer(params)
    history = trainer.run().history
    lrs = [row["lr"] for row in history]
    # linear decay to 0 over 6 steps, read before each step: 1e-3 * (1 - i / 6)
    assert lrs == pytest.approx([1e-3 * (1 - i / 6) for i in range(6)], rel=1e-6)


def test_teacher_follows_the_official_ema_schedule() -> None:
    """The teacher is updated at the start of step t >= 1 with alpha_t = min(1 - 1/(t+1),
    alpha), before its pseudo-labels: theta_0 stays in the average, theta_3 (after the
    last step) does not. Hand-computed: after step 0 the teacher is theta_0; at the start
    of step 1, 0.5 theta_0 + 0.5 theta_1; of step 2, 2/3 of that + 1/3 theta_2."""
    params = parse(SelfTrainingParams, {**SELF_TRAINING, "iterations": 3, "ema_alpha": 0.99}, "st")
    trainer = _trainer(params, TinySegmentationSet(6, seed=2, with_labels=False))
    assert trainer.teacher is not None

    def weights(module: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in module.parameters()]

    thetas = [weights(trainer.model)]
    teachers = []
    for _ in range(3):
        trainer.step(*trainer.draw())
        trainer.iteration += 1
        thetas.append(weights(trainer.model))
        teachers.append(weights(trainer.teacher.model))
    assert all(torch.equal(t, s) for t, s in zip(teachers[0], thetas[0], strict=True))
    for t, a, b in zip(teachers[1], thetas[0], thetas[1], strict=True):
        torch.testing.assert_close(t, 0.5 * a + 0.5 * b)
    for t, a, b, c in zip(teachers[2], *thetas[:3], strict=True):
        torch.testing.assert_close(t, (a + b + c) / 3)
    assert not all(torch.allclose(t, s) for t, s in zip(teachers[2], thetas[1], strict=True))


def test_source_crops_get_the_official_rules_and_target_crops_none() -> None:
    """HRDA's rare-class crop threshold min_pixels x min_crop_ratio, min_pixels scaled from
    2560x1440 to the 64x128 images (3000 x 8192 / 3686400 = 6.7 -> 7, x 2.0 = 14), and
    cat_max_ratio 0.75 on the source only, as in the official configs."""
    params = parse(
        SelfTrainingParams,
        {**SELF_TRAINING, "rare_class_sampling": {"min_pixels": 3000, "min_crop_ratio": 2.0}},
        "self_training",
    )
    trainer = _trainer(params, TinySegmentationSet(6, seed=2, with_labels=False))
    assert trainer.source_stream.rcs_min_crop_pixels == 14.0
    assert trainer.source_stream.spec.cat_max_ratio == 0.75
    assert trainer.target_stream is not None and trainer.target_stream.rcs is None
    assert trainer.target_stream.spec.cat_max_ratio == 1.0


def test_every_log_interval_writes_a_plain_line_and_reaches_on_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logs redirected to a file show progress (no bar there); trackers get every row once."""
    params = parse(
        TrainingConfig,
        {"iterations": 5, "log_every": 2, "optimizer": {"lr": 1e-3, "warmup_iters": 0}},
        "warmup",
    )
    received: list[tuple[str, list[float]]] = []
    trainer = _trainer(
        params, on_log=lambda stage, rows: received.append((stage, [r["iteration"] for r in rows]))
    )
    with caplog.at_level("INFO", logger="hrda_kedro.hrda.training.history"):
        history = trainer.run().history
    lines = [r.getMessage() for r in caplog.records if " it/s, ETA " in r.getMessage()]
    assert [line.split()[1] for line in lines] == ["2/5", "4/5", "5/5"]
    assert all(" loss " in line and " lr " in line for line in lines)
    assert lines[-1].endswith("ETA 0:00:00")
    assert received == [("train", [1.0, 2.0]), ("train", [3.0, 4.0]), ("train", [5.0])]
    assert len(history) == 5


@pytest.mark.parametrize(
    "augment",
    [
        {"color_jitter": True, "color_jitter_p": 1.0, "blur": True},
        {"photometric_distortion": True},
    ],
    ids=["jitter_and_blur", "photometric_distortion"],
)
def test_warmup_augment_settings_change_the_source_crops_and_resume_exactly(
    tmp_path: Path, augment: dict[str, Any]
) -> None:
    """Source-only, ``augment.color_jitter`` / ``blur`` apply to the source crops (the
    warmup has no mixed images), as ``photometric_distortion`` does in any stage: the
    student sees other images than without them, the draws come from the stage's own
    generator (exact resume), and with all off the images are untouched."""
    settings = {"iterations": 4, "log_every": 1, "checkpoint_every": 2}
    plain = parse(TrainingConfig, settings, "warmup")
    augmented = parse(TrainingConfig, {**settings, "augment": augment}, "warmup")
    seen: dict[str, list[torch.Tensor]] = {"plain": [], "augmented": []}
    for name, params in (("plain", plain), ("augmented", augmented)):
        trainer = _trainer(params)
        forward = trainer.student.forward_train

        def spy(images: torch.Tensor, *args: Any, _name: str = name, _f: Any = forward) -> Any:
            seen[_name].append(images.detach().clone())
            return _f(images, *args)

        trainer.student.forward_train = spy  # type: ignore[method-assign]
        source, _ = trainer.draw()
        trainer.step(source, None)
        images = trainer.setup.images(source.images)
        assert torch.equal(seen[name][0], images) == (name == "plain")

    uninterrupted = _trainer(augmented).run(tmp_path / "a.pt", "job")

    def kill_at_2(iteration: int) -> None:
        if iteration == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        _trainer(augmented).run(tmp_path / "b.pt", "job", on_checkpoint=kill_at_2)
    resumed = _trainer(augmented).run(tmp_path / "b.pt", "job")
    for key, value in uninterrupted.model.items():
        assert torch.equal(value, resumed.model[key]), key


def test_photometric_distortion_reaches_the_self_training_source_crops() -> None:
    """With self-training the distorted source crops are what the source pass sees (and
    what is mixed), as in the official augmented-source pipelines; off, no random number
    is drawn for it, so the default recipe's runs are unchanged."""
    settings = {**SELF_TRAINING, "augment": {"photometric_distortion": True}}
    params = parse(SelfTrainingParams, settings, "self_training")
    target = TinySegmentationSet(6, seed=2, with_labels=False)
    trainer = _trainer(params, target)
    source, _ = trainer.draw()
    state = trainer.mix_generator.get_state()
    distorted = trainer._distorted(source.images)
    assert distorted.dtype == torch.uint8 and not torch.equal(distorted, source.images)
    assert not torch.equal(trainer.mix_generator.get_state(), state)

    off = _trainer(parse(SelfTrainingParams, SELF_TRAINING, "self_training"), target)
    state = off.mix_generator.get_state()
    assert off._distorted(source.images) is source.images
    assert torch.equal(off.mix_generator.get_state(), state)
