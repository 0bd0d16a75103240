"""The CPU dilated depthwise convolution computes what ``F.conv2d`` computes, forward and
backward, and leaves the module's parameters as ``nn.Conv2d``'s (the ONNX export, which
traces ``F.conv2d`` instead: ``tests/test_export.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrda_kedro.hrda.networks import NetworkConfig, build_network, depthwise
from hrda_kedro.hrda.networks.depthwise import DilatedDepthwiseConv2d


def _reference(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    return F.conv2d(x, weight, padding=dilation, dilation=dilation, groups=x.shape[1])


# Dilations below, at and beyond the map's size (taps that fall wholly outside), odd sizes.
@pytest.mark.parametrize(
    ("dilation", "hw"), [(1, (8, 8)), (6, (13, 17)), (12, (9, 31)), (18, (16, 16))]
)
def test_forward_and_gradients_match_conv2d(dilation: int, hw: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(dilation)
    x = torch.randn(3, 5, *hw, generator=gen, requires_grad=True)
    conv = DilatedDepthwiseConv2d(5, dilation)
    grad = torch.randn(3, 5, *hw, generator=gen)

    out = conv(x)
    grad_x, grad_w = torch.autograd.grad(out, (x, conv.weight), grad)
    ref = _reference(x, conv.weight, dilation)
    ref_x, ref_w = torch.autograd.grad(ref, (x, conv.weight), grad)

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x, ref_x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_w, ref_w, rtol=1e-4, atol=1e-4)


def test_gradients_pass_the_numerical_check() -> None:
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    for dilation in (2, 5):
        assert torch.autograd.gradcheck(
            lambda x, w, d=dilation: depthwise._Depthwise3x3.apply(x, w, d), (x, weight)
        )


def test_batches_larger_than_a_chunk_are_computed_in_chunks(monkeypatch) -> None:
    monkeypatch.setattr(depthwise, "CHUNK_ELEMENTS", 2 * 4 * 10 * 10)  # two images a chunk
    calls = []
    convolve = depthwise._convolve_into
    monkeypatch.setattr(
        depthwise, "_convolve_into", lambda x, *a: calls.append(len(x)) or convolve(x, *a)
    )
    x = torch.randn(5, 4, 10, 10)
    weight = torch.randn(4, 1, 3, 3)

    out = depthwise.depthwise_3x3(x, weight, 3)

    assert calls == [2, 2, 1]
    torch.testing.assert_close(out, _reference(x, weight, 3), rtol=1e-5, atol=1e-5)


def test_the_module_is_an_nn_conv2d_with_its_initial_weights_and_state_dict() -> None:
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 8, 3, padding=6, dilation=6, groups=8, bias=False)
    torch.manual_seed(0)
    ours = DilatedDepthwiseConv2d(8, 6)

    assert isinstance(ours, nn.Conv2d)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    torch.testing.assert_close(ours.weight, plain.weight, rtol=0, atol=0)


def test_daformer_head_uses_it_for_its_dilated_branches() -> None:
    network = build_network(NetworkConfig(architecture="daformer", encoder="mit-nano"))
    dilated = {
        name: m.dilation[0]
        for name, m in network.named_modules()
        if isinstance(m, DilatedDepthwiseConv2d)
    }
    assert dilated == {
        f"decode_head.fusion.branches.{b}.0.0": d for b, d in enumerate((6, 12, 18), 1)
    }


@pytest.mark.parametrize("grad", [False, True])
def test_a_bias_passed_to_conv_forward_is_added_as_conv2d_adds_it(grad: bool) -> None:
    """The hook a folded BatchNorm uses: the bias rides on the centre tap without autograd
    and is a separate, differentiable add with it."""
    gen = torch.Generator().manual_seed(3)
    conv = DilatedDepthwiseConv2d(4, 6)
    x = torch.randn(2, 4, 11, 13, generator=gen, requires_grad=grad)
    bias = torch.randn(4, generator=gen, requires_grad=grad)
    ref = F.conv2d(x, conv.weight, bias, padding=6, dilation=6, groups=4)

    with torch.set_grad_enabled(grad):
        out = conv._conv_forward(x, conv.weight, bias)

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    if grad:
        upstream = torch.randn(ref.shape, generator=gen)
        ours = torch.autograd.grad(out, (x, bias, conv.weight), upstream)
        theirs = torch.autograd.grad(ref, (x, bias, conv.weight), upstream)
        for mine, expected in zip(ours, theirs, strict=True):
            torch.testing.assert_close(mine, expected, rtol=1e-4, atol=1e-4)
