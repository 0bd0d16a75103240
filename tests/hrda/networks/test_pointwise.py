"""The CPU 1x1 convolution computes what ``F.conv2d`` computes, forward and backward, and
keeps ``nn.Conv2d``'s parameters, initial weights and state dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrda_kedro.hrda.networks import NetworkConfig, build_network
from hrda_kedro.hrda.networks.pointwise import PointwiseConv2d


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 16, 32, 32), (20, 32, 16, 16), (1, 5, 3, 7)])
def test_forward_and_gradients_match_conv2d(bias: bool, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(shape[1])
    conv = PointwiseConv2d(shape[1], 6, bias=bias)
    x = torch.randn(*shape, generator=gen, requires_grad=True)
    upstream = torch.randn(shape[0], 6, *shape[2:], generator=gen)
    params = [x, conv.weight] + ([conv.bias] if bias else [])

    out = conv(x)
    reference = F.conv2d(x, conv.weight, conv.bias)

    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    ours = torch.autograd.grad(out, params, upstream)
    theirs = torch.autograd.grad(reference, params, upstream)
    for mine, expected in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-4)


def test_channels_last_maps_keep_conv2d_and_their_layout() -> None:
    conv = PointwiseConv2d(8, 4)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)

    out = conv(x)

    assert not PointwiseConv2d._use_matmul(x, conv.weight)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias))


def test_the_module_is_an_nn_conv2d_with_its_initial_weights_and_state_dict() -> None:
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 3, 1)
    torch.manual_seed(0)
    ours = PointwiseConv2d(8, 3)

    assert isinstance(ours, nn.Conv2d)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], tensor, rtol=0, atol=0)


def test_every_1x1_convolution_of_the_daformer_heads_uses_it() -> None:
    network = build_network(NetworkConfig(architecture="daformer", encoder="mit-nano"))
    heads = [network.decode_head, network.attention_head]
    one_by_one = [
        m
        for head in heads
        for m in head.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
    ]
    assert len(one_by_one) == 2 * (4 + 1) + 4 + 1  # embeddings, classifiers; ASPP; MLP fusion
    assert all(isinstance(m, PointwiseConv2d) for m in one_by_one)
