"""Parameter parsing: defaults, conversion and messages that name the key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hrda_kedro.data.ingest import IngestionSettings
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.params import (
    AblationParams,
    EvaluationParams,
    ParameterError,
    RuntimeParams,
    SelfTrainingParams,
    check_input_folder,
    check_work_folder,
    parameter_groups,
    parse,
)


@pytest.mark.parametrize(
    ("cls", "mapping", "message"),
    [
        (
            TrainingConfig,
            {"iteratons": 5},
            r"warmup\.iteratons: unknown key \(did you mean 'iterations'\?\)",
        ),
        (
            TrainingConfig,
            {"iterations": "many"},
            r"warmup\.iterations: expected an integer, got 'many'",
        ),
        (TrainingConfig, {"iterations": -1}, r"warmup\.iterations: expected >= 0, got -1"),
        # seeds failed inside numpy (negative) or torch (huge) after work had started
        (RuntimeParams, {"seed": -1}, r"warmup\.seed: expected 0 <= value < 4294967296, got -1"),
        (RuntimeParams, {"seed": 2**70}, r"warmup\.seed: expected 0 <= value < 4294967296"),
        (
            IngestionSettings,
            {"embedded": {"seed": -1}},
            r"warmup\.embedded\.seed: expected 0 <= value < 4294967296, got -1",
        ),
        (
            AblationParams,
            {"seeds": [1, -2]},
            r"warmup\.seeds: expected seeds 0 <= seed < 4294967296",
        ),
        (SelfTrainingParams, {"iterations": 0}, r"warmup\.iterations: expected >= 1, got 0"),
        (TrainingConfig, {"optimizer": {"lr": 0}}, r"warmup\.optimizer\.lr: expected > 0"),
        (
            TrainingConfig,
            {"optimizer": {"betas": [0.9]}},
            r"warmup\.optimizer\.betas: expected a list of 2",
        ),
        (
            TrainingConfig,
            {"augment": {"flip": "yes"}},
            r"warmup\.augment\.flip: expected true/false",
        ),
        (
            TrainingConfig,
            {"augment": {"color_jitter_strength": 0.9}},
            r"warmup\.augment\.color_jitter_strength: expected 0 <= value <= 0\.5, got 0\.9",
        ),
        (
            SelfTrainingParams,
            {"augment": {"blur_p": 1.5}},
            r"warmup\.augment\.blur_p: expected 0 <= value <= 1, got 1\.5",
        ),
        (RuntimeParams, {"device": "tpu"}, r"warmup\.device: expected auto \| cpu \| cuda"),
        (
            RuntimeParams,
            {"precision": "fp16"},
            r"warmup\.precision: expected one of 'auto' \| 'fp32' \| 'bf16'",
        ),
        (
            RuntimeParams,
            {"predict_streams": 0},
            r"warmup\.predict_streams: expected auto or an integer >= 1, got 0",
        ),
        (
            RuntimeParams,
            {"predict_streams": "many"},
            r"warmup\.predict_streams: expected 'auto' or an integer, got 'many'",
        ),
        (
            ModelConfig,
            {"network": {"encoder": "vit"}},
            r"warmup\.network\.encoder: expected one of",
        ),
        (
            ModelConfig,
            {"network": {"architecture": "deeplabv2"}},
            r"warmup\.network\.encoder: deeplabv2 needs resnet101",
        ),
        (
            ModelConfig,
            {"hrda": {"context_crop": [256, 256], "detail_crop": [512, 128]}},
            r"warmup\.hrda\.detail_crop: the detail crop \[512, 128\] must fit inside",
        ),
        (
            ModelConfig,
            {"hrda": {"context_crop": [250, 256]}},
            r"context_crop: expected multiples of scale x output stride = 8",
        ),
        (
            ModelConfig,
            {"hrda": {"fixed_attention": 1.5}},
            r"^parameter warmup\.hrda\.fixed_attention: expected 0 <= value <= 1, got 1\.5$",
        ),
        (
            ModelConfig,
            {"hrda": {"hr_loss_weight": -1}},
            r"^parameter warmup\.hrda\.hr_loss_weight: expected 0 <= value <= 1, got -1\.0$",
        ),
        (
            ModelConfig,
            {"inference": {"hr_window_batch": 0}},
            r"^parameter warmup\.inference\.hr_window_batch: expected >= 1, got 0$",
        ),
        (EvaluationParams, {"predictions": ["context"]}, r"predictions: must include 'fused'"),
        (
            EvaluationParams,
            {"qualitative_images": 0},
            r"^parameter warmup\.qualitative_images: expected >= 1, got 0$",
        ),
        (
            IngestionSettings,
            {"embedded": {"sizes": {"target_val": -1}}},
            r"^parameter warmup\.embedded\.sizes\.target_val: expected >= 0, got -1$",
        ),
        (
            SelfTrainingParams,
            {"feature_distance": {"enabled": True}},
            r"feature_distance\.pretrained: the ImageNet feature distance needs",
        ),
        (  # a group left null: its keys, not the name of a class of ours
            SelfTrainingParams,
            {"optimizer": None},
            r"^parameter warmup\.optimizer: expected a mapping with the keys lr, head_lr_mult, "
            r"weight_decay, no_decay, betas, .*, got None$",
        ),
    ],
)
def test_bad_values_name_the_key(cls: type, mapping: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse(cls, mapping, "warmup")


def test_numbers_and_tuples_are_converted() -> None:
    train = parse(TrainingConfig, {"optimizer": {"lr": 1, "betas": [0.5, 0.9]}}, "warmup")
    assert isinstance(train.optimizer.lr, float) and train.optimizer.lr == 1.0
    assert train.optimizer.betas == (0.5, 0.9)


def test_bool_is_not_an_integer() -> None:
    with pytest.raises(ParameterError, match="expected an integer"):
        parse(TrainingConfig, {"iterations": True}, "warmup")


# Each numeric training, self-training and ingestion setting out of the range its meaning
# allows, through the path a run takes (parse of the group's class, named by the group):
# (dotted key, value, what the message says after "parameter <key>: ").
OUT_OF_RANGE = [
    ("warmup.optimizer.lr", -1, r"expected > 0, got -1\.0"),
    ("warmup.optimizer.weight_decay", -1, r"expected >= 0, got -1\.0"),
    ("warmup.optimizer.head_lr_mult", -10, r"expected >= 0, got -10\.0"),
    ("warmup.optimizer.poly_power", 0, r"expected > 0, got 0\.0"),
    ("warmup.optimizer.poly_power", -1, r"expected > 0, got -1\.0"),
    (
        "warmup.optimizer.betas",
        [1.5, 0.999],
        r"expected two numbers 0 <= beta < 1 .*got \[1\.5, 0\.999\]",
    ),
    (
        "warmup.optimizer.betas",
        [0.9, 1],
        r"expected two numbers 0 <= beta < 1 .*got \[0\.9, 1\.0\]",
    ),
    ("warmup.optimizer.betas", [-0.1, 0.999], r"expected two numbers 0 <= beta < 1"),
    (
        "warmup.optimizer.betas",
        [0.9, 0.99, 0.999],
        r"expected a list of 2 x a number, got 3 values",
    ),
    ("warmup.optimizer.warmup_iters", -1, r"expected >= 0, got -1"),
    (
        "warmup.optimizer.grad_clip",
        -1,
        r"expected null \(no clipping\) or a gradient norm > 0, got -1\.0",
    ),
    ("warmup.optimizer.grad_clip", 0, r"expected null \(no clipping\) or a gradient norm > 0"),
    (
        "warmup.rare_class_sampling.reference_size",
        [0, 0],
        r"expected two positive integers, got \[0, 0\]",
    ),
    ("warmup.rare_class_sampling.reference_size", [1440, -1], r"expected two positive integers"),
    ("warmup.rare_class_sampling.temperature", 0, r"expected > 0"),
    ("warmup.rare_class_sampling.min_pixels", 0, r"expected >= 1"),
    ("warmup.rare_class_sampling.min_crop_ratio", -1, r"expected >= 0"),
    ("warmup.augment.color_jitter_p", -0.1, r"expected 0 <= value <= 1"),
    ("warmup.augment.color_jitter_strength", -0.1, r"expected 0 <= value <= 0\.5"),
    ("warmup.augment.blur_p", 2, r"expected 0 <= value <= 1"),
    ("warmup.source_batch_size", 0, r"expected >= 1, got 0"),
    ("warmup.target_batch_size", 0, r"expected >= 1, got 0"),
    ("warmup.checkpoint_every", 0, r"expected >= 1, got 0"),
    ("warmup.log_every", 0, r"expected >= 1, got 0"),
    ("warmup.decode_threads", 0, r"expected >= 1, got 0"),
    ("warmup.cat_max_ratio", 0, r"expected 0 < ratio <= 1"),
    ("warmup.cat_max_ratio", 1.5, r"expected 0 < ratio <= 1"),
    ("self_training.optimizer.grad_clip", -1, r"expected null \(no clipping\) or a gradient"),
    ("self_training.optimizer.betas", [1.5, 0.999], r"expected two numbers 0 <= beta < 1"),
    ("self_training.feature_distance.weight", -1, r"expected >= 0, got -1\.0"),
    ("self_training.pseudo_labels.threshold", 1.5, r"expected 0\.\.1, got 1\.5"),
    ("self_training.pseudo_labels.threshold", -0.1, r"expected 0\.\.1"),
    ("self_training.pseudo_labels.margins", [-1, 0, 0, 0], r"expected four non-negative pixels"),
    (
        "self_training.pseudo_labels.margins_reference_size",
        [0, 2048],
        r"expected two positive integers",
    ),
    ("self_training.ema_alpha", 1, r"expected 0 <= alpha < 1"),
    ("self_training.ema_alpha", -0.1, r"expected 0 <= alpha < 1"),
    ("self_training.mic.mask_ratio", 1, r"expected 0"),
    ("self_training.mic.mask_ratio", -0.1, r"expected 0 <= ratio < 1"),
    ("self_training.mic.lambda", -1, r"expected >= 0"),
    ("self_training.mic.mask_block_size", 0, r"expected >= 1 pixel, got 0"),
    ("self_training.mic.mask_block_reference_size", [0, 0], r"expected two positive integers"),
    ("ingestion.embedded.sizes.source_train", 0, r"expected >= 1 image .*got 0"),
    ("ingestion.embedded.sizes.target_val", 0, r"expected >= 1 image .*got 0"),
    ("ingestion.embedded.sizes.target_train", -1, r"expected >= 0, got -1"),
]


def _nested(key: str, value: Any) -> tuple[str, dict]:
    """``"warmup.optimizer.lr", -1`` -> ``("warmup", {"optimizer": {"lr": -1}})``."""
    group, *path = key.split(".")
    mapping: Any = value
    for part in reversed(path):
        mapping = {part: mapping}
    return group, mapping


@pytest.mark.parametrize(
    ("key", "value", "message"), OUT_OF_RANGE, ids=[f"{k}={v}" for k, v, _ in OUT_OF_RANGE]
)
def test_out_of_range_values_stop_the_run_naming_the_key(
    key: str, value: Any, message: str
) -> None:
    group, mapping = _nested(key, value)
    with pytest.raises(ParameterError, match=rf"^parameter {re.escape(key)}: {message}"):
        parse(parameter_groups()[group], mapping, group)


@pytest.mark.parametrize(
    ("group", "mapping"),
    [
        ("warmup", {"optimizer": {"grad_clip": None, "head_lr_mult": 0, "weight_decay": 0}}),
        ("warmup", {"optimizer": {"grad_clip": 1.0, "betas": [0, 0.5], "poly_power": 0.5}}),
        ("warmup", {"rare_class_sampling": {"reference_size": None}}),
        ("self_training", {"feature_distance": {"weight": 0}, "mic": {"lambda": 0}}),
        # No target images drawn: source-only runs (ingestion_datasets.target_train: null).
        ("ingestion", {"embedded": {"sizes": {"target_train": 0}}}),
    ],
)
def test_edge_values_that_make_sense_parse(group: str, mapping: dict) -> None:
    parse(parameter_groups()[group], mapping, group)


@pytest.mark.parametrize("group", ["warmup", "self_training", "ingestion"])
def test_the_library_defaults_parse(group: str) -> None:
    parse(parameter_groups()[group], {}, group)


def test_the_work_folder_is_one_the_run_can_create(tmp_path: Path) -> None:
    """A path to be created is fine; a file on the way is not (it failed at the first
    in-training checkpoint, after checkpoint_every iterations)."""
    check_work_folder(str(tmp_path / "new" / "in_progress"), "runtime.work_dir")
    (tmp_path / "notes.txt").write_text("x")
    for path in ("notes.txt", "notes.txt/in_progress"):
        with pytest.raises(
            ParameterError,
            match=r"^parameter ablations\.work_dir: .*notes\.txt "
            "is a file",
        ):
            check_work_folder(str(tmp_path / path), "ablations.work_dir")


def test_predict_input_dir_expands_the_home_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``~/photos`` is the home folder's, as the catalog's dataset reads it (it was
    ``<project>/~/photos``, refused as another folder than the catalog's)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    check_input_folder({"input_dir": "~/photos"}, str(tmp_path / "photos"))
