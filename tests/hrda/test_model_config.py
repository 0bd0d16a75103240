"""The model's configs check themselves on construction, with messages naming the field."""

from __future__ import annotations

import pytest

from hrda_kedro.hrda.config import ConfigError
from hrda_kedro.hrda.model_config import (
    HRDAConfig,
    InferenceConfig,
    ModelConfig,
    SlidingWindows,
)
from hrda_kedro.hrda.networks import NetworkConfig


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"architecture": "segformer"}, ["architecture", "daformer", "deeplabv2", "segformer"]),
        ({"encoder": "mit-b6"}, ["encoder", "mit-b5", "mit-nano", "mit-b6"]),
        ({"encoder": "resnet101"}, ["encoder", "daformer", "resnet101"]),
        ({"architecture": "deeplabv2", "encoder": "mit-b5"}, ["encoder", "resnet101"]),
        ({"num_classes": 0}, ["num_classes", "2..255"]),
        ({"num_classes": 2.5}, ["num_classes"]),
        ({"decoder_embed_dim": -1}, ["decoder_embed_dim"]),
        ({"attention_embed_dim": True}, ["attention_embed_dim"]),
        ({"attention_classwise": "yes"}, ["attention_classwise"]),
        ({"dropout": 1.0}, ["dropout", "0 <= dropout < 1"]),
        ({"dropout": -0.1}, ["dropout"]),
        ({"pretrained": ""}, ["pretrained"]),
        ({"pretrained": 3}, ["pretrained"]),
    ],
)
def test_invalid_network_values_name_the_field(overrides: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        NetworkConfig(**overrides)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("encoder", ["mit-b0", "mit-b3", "mit-nano"])
def test_valid_mit_encoders_are_accepted(encoder: str) -> None:
    assert NetworkConfig(encoder=encoder, pretrained="weights/mit.pth").encoder == encoder


def test_deeplabv2_accepts_resnet101() -> None:
    config = NetworkConfig(architecture="deeplabv2", encoder="resnet101", dropout=0.0)
    assert config.architecture == "deeplabv2" and config.output_stride == 8


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: HRDAConfig(scale=0), "scale: expected >= 1, got 0"),
        (
            lambda: HRDAConfig(context_crop=(0, 64)),
            "context_crop: expected two positive integers, got [0, 64]",
        ),
        (
            lambda: HRDAConfig(fixed_attention=1.5),
            "fixed_attention: expected 0 <= value <= 1, got 1.5",
        ),
        (
            lambda: HRDAConfig(hr_loss_weight=-0.1),
            "hr_loss_weight: expected 0 <= value <= 1, got -0.1",
        ),
        (lambda: InferenceConfig(window_batch=0), "window_batch: expected >= 1, got 0"),
        (lambda: InferenceConfig(hr_window_batch=0), "hr_window_batch: expected >= 1, got 0"),
        (
            lambda: InferenceConfig(stride=(8, -1)),
            "stride: expected two positive integers, got [8, -1]",
        ),
        (
            lambda: ModelConfig(hrda=HRDAConfig(context_crop=(260, 256))),
            "hrda.context_crop: expected multiples of scale x output stride = 8, got [260, 256]",
        ),
        (
            lambda: ModelConfig(hrda=HRDAConfig(detail_crop=(512, 128))),
            "hrda.detail_crop: the detail crop [512, 128] must fit inside the context crop "
            "[256, 256]",
        ),
        (
            lambda: ModelConfig(inference=InferenceConfig(window=(96, 96))),
            "inference.window: the inference window [96, 96] must hold the detail crop "
            "[128, 128] (expected at least that size)",
        ),
        (  # found by full-image inference, after a whole warmup, until 3 Dec
            lambda: ModelConfig(inference=InferenceConfig(stride=(512, 512))),
            "inference.stride: the stride [512, 512] must not exceed the window [256, 256]: "
            "pixels between windows would never be predicted",
        ),
        (
            lambda: ModelConfig(inference=InferenceConfig(stride=(100, 100))),
            "inference.stride: expected multiples of scale x output stride = 8, got [100, 100]",
        ),
        (
            lambda: ModelConfig(inference=InferenceConfig(window=(204, 200))),
            "inference.window: expected multiples of scale x output stride = 8, got [204, 200]",
        ),
        (
            lambda: ModelConfig(inference=InferenceConfig(window=(264, 264))),
            "inference.stride: expected multiples of scale x output stride = 8, got [132, 132] "
            "(the default: half the window)",
        ),
    ],
)
def test_each_setting_is_checked_once_by_its_config(build, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value) == message


def test_the_inference_window_defaults_to_the_context_crop() -> None:
    model = ModelConfig(hrda=HRDAConfig(context_crop=(512, 1024)))
    assert model.window == (512, 1024) and model.stride == (256, 512)


def test_sliding_windows_come_from_the_inference_settings_unless_overridden() -> None:
    model = ModelConfig(inference=InferenceConfig(window_batch=3, window_weights="tapered"))
    assert model.sliding_windows() == SlidingWindows((256, 256), (128, 128), 3, "tapered")
    windows = model.sliding_windows(batch_size=7, weights="uniform")
    assert windows == SlidingWindows((256, 256), (128, 128), 7, "uniform")
