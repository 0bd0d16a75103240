"""1x1 convolution as a batched matrix product, for the CPU.

Why not ``F.conv2d``: oneDNN, torch's CPU convolution backend, reorders channels-first
maps into its blocked layout around every call, which costs more than the product itself
for the decode heads' small 1x1 convolutions (16 to 256 channels on maps of 4x4 to 32x32).
Per image a 1x1 convolution is ``weight (O, C) @ x (C, H*W)``, which ``torch.baddbmm``
computes on the channels-first map as it lies: without it a full-image prediction took
1.16-1.20x as long on a 2-core CPU, while training steps did not separate from the
machine's noise (``benchmarks/cpu_paths.py``; docs/performance.md). The results agree to
float rounding (another summation order). CUDA, channels-last maps, other
dtypes, autocast, tracing (the ONNX export) and ``torch.compile`` keep ``F.conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pointwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a (O, C, 1, 1) ``weight`` on an (N, C, H, W) ``x``."""
    batch, channels, height, width = x.shape
    matrix = weight.view(weight.shape[0], channels).expand(batch, -1, -1)
    pixels = x.view(batch, channels, height * width)
    if bias is None:
        out = torch.bmm(matrix, pixels)
    else:
        out = torch.baddbmm(bias.view(1, -1, 1), matrix, pixels)
    return out.view(batch, -1, height, width)


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, O, 1, bias=bias)`` (same parameters and state dict) that runs
    :func:`pointwise_conv` on contiguous channels-first float32 CPU maps."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if self._use_matmul(x, weight):
            return pointwise_conv(x, weight, bias)
        return F.conv2d(x, weight, bias)

    @staticmethod
    def _use_matmul(x: torch.Tensor, weight: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and weight.dtype == torch.float32
            and x.dim() == 4
            and x.is_contiguous()
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling()
        )
