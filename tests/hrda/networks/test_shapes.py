"""Output shapes, strides and channels of the networks on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from hrda_kedro.hrda.networks import (
    DAFormerNetwork,
    DeepLabV2Network,
    NetworkConfig,
    SegmentationNetwork,
    build_network,
)


@pytest.fixture(scope="module")
def nano() -> DAFormerNetwork:
    torch.manual_seed(0)
    network = build_network(NetworkConfig(encoder="mit-nano", num_classes=7, decoder_embed_dim=32))
    assert isinstance(network, DAFormerNetwork)
    return network.eval()


@pytest.fixture(scope="module")
def deeplab() -> DeepLabV2Network:
    torch.manual_seed(0)
    config = NetworkConfig(
        architecture="deeplabv2", encoder="resnet101", num_classes=5, attention_classwise=False
    )
    network = build_network(config)
    assert isinstance(network, DeepLabV2Network)
    return network.eval()


def _heads(
    network: SegmentationNetwork, images: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Features, logits and attention of ``images``; the forward pass is the logits."""
    with torch.no_grad():
        features = network.extract(images)
        logits = network.segment(features)
        assert torch.equal(network(images), logits)
        return features, logits, network.attend(features)


def test_daformer_features_are_at_strides_4_to_32(nano: DAFormerNetwork) -> None:
    with torch.no_grad():
        features = nano.extract(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (2, 16, 16, 24),
        (2, 32, 8, 12),
        (2, 64, 4, 6),
        (2, 128, 2, 3),
    ]


def test_daformer_logits_and_classwise_attention_at_stride_4(nano: DAFormerNetwork) -> None:
    _, logits, attention = _heads(nano, torch.randn(2, 3, 64, 96))
    assert isinstance(nano, SegmentationNetwork)
    assert (nano.num_classes, nano.output_stride) == (7, 4)
    assert logits.shape == (2, 7, 16, 24)
    assert attention.shape == (2, 7, 16, 24)


def test_daformer_single_channel_attention() -> None:
    config = NetworkConfig(
        encoder="mit-nano", decoder_embed_dim=16, attention_embed_dim=8, attention_classwise=False
    )
    network = build_network(config).eval()
    with torch.no_grad():
        features = network.extract(torch.randn(1, 3, 32, 32))
        assert network.attend(features).shape == (1, 1, 8, 8)
        assert network.segment(features).shape == (1, 19, 8, 8)


def test_daformer_channels_last_gives_the_same_logits(nano: DAFormerNetwork) -> None:
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = nano(images)
        actual = nano(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_daformer_gradients_reach_encoder_and_both_heads() -> None:
    network = build_network(NetworkConfig(encoder="mit-nano", decoder_embed_dim=16)).train()
    features = network.extract(torch.randn(2, 3, 32, 32))
    (network.segment(features).mean() + network.attend(features).mean()).backward()
    for part in (network.encoder, network.decode_head, network.attention_head):
        assert all(p.grad is not None for p in part.parameters())


def test_deeplabv2_logits_and_attention_at_stride_8(deeplab: DeepLabV2Network) -> None:
    features, logits, attention = _heads(deeplab, torch.randn(1, 3, 32, 48))
    assert [tuple(f.shape[1:]) for f in features] == [
        (256, 8, 12),
        (512, 4, 6),
        (1024, 4, 6),
        (2048, 4, 6),
    ]
    assert (deeplab.num_classes, deeplab.output_stride) == (5, 8)
    assert logits.shape == (1, 5, 4, 6)
    assert attention.shape == (1, 1, 4, 6)


def test_deeplabv2_classifier_sums_dilations_6_and_12(deeplab: DeepLabV2Network) -> None:
    convs = deeplab.decode_head.convs
    assert [(c.dilation, c.padding, c.kernel_size) for c in convs] == [
        ((6, 6), (6, 6), (3, 3)),
        ((12, 12), (12, 12), (3, 3)),
    ]
    assert all(c.bias is not None for c in convs)
    x = torch.randn(1, 2048, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(deeplab.decode_head(x), convs[0](x) + convs[1](x))
