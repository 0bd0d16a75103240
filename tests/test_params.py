"""Parameter parsing: defaults, conversion and messages that name the key."""

from __future__ import annotations

import pytest

from hrda_kedro.data.ingest import IngestionSettings
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.params import (
    EvaluationParams,
    ParameterError,
    RuntimeParams,
    SelfTrainingParams,
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
