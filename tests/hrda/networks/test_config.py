"""NetworkConfig validation: bad values fail with messages naming the field."""

from __future__ import annotations

import pytest

from hrda_kedro.hrda.networks import NetworkConfig


def test_defaults_are_the_paper_setting() -> None:
    config = NetworkConfig()
    assert (config.architecture, config.encoder, config.num_classes) == ("daformer", "mit-b5", 19)
    assert (config.decoder_embed_dim, config.attention_embed_dim) == (256, 256)
    assert config.attention_classwise is True
    assert config.dropout == 0.1
    assert config.pretrained is None


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"architecture": "segformer"}, ["architecture", "daformer", "deeplabv2", "segformer"]),
        ({"encoder": "mit-b6"}, ["encoder", "mit-b5", "mit-nano", "mit-b6"]),
        ({"encoder": "resnet101"}, ["encoder", "daformer", "resnet101"]),
        ({"architecture": "deeplabv2", "encoder": "mit-b5"}, ["encoder", "resnet101"]),
        ({"num_classes": 0}, ["num_classes", "positive integer"]),
        ({"num_classes": 2.5}, ["num_classes"]),
        ({"decoder_embed_dim": -1}, ["decoder_embed_dim"]),
        ({"attention_embed_dim": True}, ["attention_embed_dim"]),
        ({"attention_classwise": "yes"}, ["attention_classwise"]),
        ({"dropout": 1.0}, ["dropout", "[0, 1)"]),
        ({"dropout": -0.1}, ["dropout"]),
        ({"pretrained": ""}, ["pretrained"]),
        ({"pretrained": 3}, ["pretrained"]),
    ],
)
def test_invalid_values_name_the_field(overrides: dict, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        NetworkConfig(**overrides)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("encoder", ["mit-b0", "mit-b3", "mit-nano"])
def test_valid_mit_encoders_are_accepted(encoder: str) -> None:
    assert NetworkConfig(encoder=encoder, pretrained="weights/mit.pth").encoder == encoder


def test_deeplabv2_accepts_resnet101() -> None:
    config = NetworkConfig(architecture="deeplabv2", encoder="resnet101", dropout=0.0)
    assert config.architecture == "deeplabv2"
