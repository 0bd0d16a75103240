"""The benchmarks' FLOP count against analytic counts of single layers.

torch 2.14's ``FlopCounterMode`` counts a grouped convolution's weight gradient ``groups``
times too high and skips CPU attention; ``_common.count_flops`` must give the textbook count
(2 FLOPs per multiply-add; a backward costs twice its forward) for each layer kind.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _common as common  # noqa: E402 - the benchmarks folder is not a package


def _fwd_bwd(module: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    return common.count_flops(lambda: module(x).sum().backward())


@pytest.mark.parametrize("groups", [1, 4, 64])
def test_convolution_forward_and_backward_match_the_analytic_count(groups: int) -> None:
    conv = nn.Conv2d(64, 64, 3, padding=1, groups=groups)
    x = torch.randn(2, 64, 16, 16, requires_grad=True)
    forward = 2 * 2 * 16 * 16 * 64 * (64 // groups) * 9
    total, per_op = _fwd_bwd(conv, x)
    assert per_op["aten.convolution"] == forward
    assert per_op["aten.convolution_backward"] == 2 * forward  # input and weight gradient
    assert total == 3 * forward


def test_strided_and_transposed_convolutions_count_their_own_grid() -> None:
    x = torch.randn(1, 8, 16, 16, requires_grad=True)
    strided = nn.Conv2d(8, 16, 3, stride=2, padding=1)
    forward = 2 * 8 * 8 * 16 * 8 * 9  # an 8x8 output grid
    assert _fwd_bwd(strided, x)[0] == 3 * forward
    transposed = nn.ConvTranspose2d(8, 16, 2, stride=2, groups=2)
    forward = 2 * 16 * 16 * 8 * (16 // 2) * 4  # work runs over the 16x16 input grid
    assert _fwd_bwd(transposed, x)[0] == 3 * forward


def test_linear_and_cpu_attention_are_counted() -> None:
    linear = nn.Linear(32, 48)
    x = torch.randn(4, 10, 32, requires_grad=True)
    assert _fwd_bwd(linear, x)[0] == 3 * 2 * 40 * 32 * 48
    q, k, v = (torch.randn(2, 3, 50, 16, requires_grad=True) for _ in range(3))
    total, per_op = common.count_flops(
        lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()
    )
    forward = 2 * 2 * (2 * 3 * 50 * 50 * 16)  # q @ k^T and attn @ v, 2 FLOPs per MAC
    assert per_op["aten._scaled_dot_product_flash_attention_for_cpu"] == forward
    # The backward recomputes the scores, then the gradients of the scores, v, q and k:
    # five matmuls of that size.
    assert per_op["aten._scaled_dot_product_flash_attention_for_cpu_backward"] == 2.5 * forward
    assert total == 3.5 * forward
