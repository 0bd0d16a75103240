"""DAFormer's building blocks compute the same thing on their fast paths: BatchNorm folded
into the convolution in inference, and the head's channels-last upsampling on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrda_kedro.hrda.networks import NetworkConfig, build_network
from hrda_kedro.hrda.networks.daformer import ConvBNReLU, upsample_features


def _with_trained_statistics(block: ConvBNReLU, seed: int) -> ConvBNReLU:
    """Running statistics and affine parameters far from their initial 0 / 1."""
    gen = torch.Generator().manual_seed(seed)
    norm = block[1]
    channels = norm.num_features
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(channels, generator=gen))
        norm.running_var.copy_(torch.rand(channels, generator=gen) * 3 + 0.1)
        norm.weight.copy_(torch.randn(channels, generator=gen))
        norm.bias.copy_(torch.randn(channels, generator=gen))
    return block.eval()


def _count_calls(module: nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "dilation", "groups"),
    [(8, 6, 1, 1, 1), (8, 6, 3, 1, 1), (8, 8, 3, 6, 8)],  # 1x1, 3x3, dilated depthwise
)
def test_inference_folds_batchnorm_into_the_convolution(
    in_channels: int, out_channels: int, kernel: int, dilation: int, groups: int
) -> None:
    block = _with_trained_statistics(
        ConvBNReLU(in_channels, out_channels, kernel, dilation, groups), seed=kernel + dilation
    )
    x = torch.randn(3, in_channels, 12, 14, generator=torch.Generator().manual_seed(0))
    reference = nn.Sequential.forward(block, x)
    norm_calls = _count_calls(block[1])

    with torch.no_grad():
        folded = block(x)
    assert norm_calls == []  # no BatchNorm pass: folded into the weights
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)

    with torch.inference_mode():
        torch.testing.assert_close(block(x), reference, rtol=1e-5, atol=1e-5)
    assert norm_calls == []


def test_training_and_autograd_keep_the_batchnorm_module() -> None:
    """Training normalises with batch statistics; an eval forward with autograd keeps the
    module too, so its gradients are those of the unfused graph."""
    block = _with_trained_statistics(ConvBNReLU(4, 4, 3), seed=1)
    norm_calls = _count_calls(block[1])
    x = torch.randn(2, 4, 8, 8)

    block(x)  # eval, autograd on
    block.train()(x)
    assert norm_calls == [1, 1]


def test_the_network_predicts_the_same_logits_folded_and_unfolded() -> None:
    torch.manual_seed(0)
    network = build_network(NetworkConfig(architecture="daformer", encoder="mit-nano"))
    network.train()
    with torch.no_grad():  # give every BatchNorm running statistics of real features
        for _ in range(3):
            network.segment(network.extract(torch.randn(2, 3, 64, 64)))
    network.eval()
    features = [f.detach() for f in network.extract(torch.randn(2, 3, 64, 64))]

    unfolded = network.segment(features)  # autograd on: the BatchNorm modules run
    with torch.no_grad():
        folded = network.segment(features)

    torch.testing.assert_close(folded, unfolded.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hw", [(4, 4), (8, 8), (5, 9)])
def test_head_upsampling_equals_bilinear_interpolation(hw: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, *hw, generator=gen, requires_grad=True)
    upstream = torch.randn(3, 16, 32, 32, generator=gen)

    ours = upsample_features(x, torch.Size((32, 32)))
    reference = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)

    assert ours.is_contiguous()  # the layout of its input, for the concatenation after it
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)
    grad_ours, grad_reference = (torch.autograd.grad(y, x, upstream)[0] for y in (ours, reference))
    torch.testing.assert_close(grad_ours, grad_reference, rtol=1e-5, atol=1e-5)
