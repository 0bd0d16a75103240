"""Dilated depthwise 3x3 convolution as nine shifted multiply-adds, for the CPU.

Why not ``F.conv2d``: oneDNN, torch's CPU convolution backend, runs DAFormer's dilated
depthwise 3x3 convolutions (dilations 6/12/18 on the 1/4-resolution feature map) at a few
GFLOP/s. Nine elementwise multiply-adds over the overlapping slices of the map, batch
chunks kept cache-sized, do the same sums 2-4x faster forward, and training iterations
became about 1.2x faster on a 2-core CPU (docs/performance.md). The results agree to float
rounding (another summation order). CUDA, other dtypes, autocast, tracing (the ONNX
export) and ``torch.compile`` keep ``F.conv2d``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Elements of one batch chunk: 2 MiB of float32, inside a core's L2 cache, so the nine
# passes over a chunk read it from cache rather than memory.
CHUNK_ELEMENTS = 1 << 19
TAPS = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]


def _overlap(size: int, offset: int) -> tuple[slice, slice] | None:
    """Output and input slices of one axis where ``out[p] += x[p + offset]`` stays inside."""
    start, end = max(0, -offset), min(size, size - offset)
    if start >= end:
        return None
    return slice(start, end), slice(start + offset, end + offset)


def _tap_slices(height: int, width: int, dilation: int, i: int, j: int) -> Any:
    rows = _overlap(height, (i - 1) * dilation)
    cols = _overlap(width, (j - 1) * dilation)
    if rows is None or cols is None:
        return None
    return (..., rows[0], cols[0]), (..., rows[1], cols[1])


def _convolve_into(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    out: torch.Tensor,
) -> None:
    """``out`` = the zero-padded dilated depthwise 3x3 convolution of ``x`` by ``weight``,
    plus ``bias`` (C,) if given (added with the centre tap, not in a pass of its own)."""
    channels, (height, width) = x.shape[1], x.shape[-2:]
    taps = weight.view(channels, 9).t().reshape(9, 1, channels, 1, 1)
    if bias is None:
        torch.mul(x, taps[4], out=out)
    else:
        torch.addcmul(bias.view(1, channels, 1, 1), x, taps[4], out=out)
    for i, j in TAPS:
        slices = _tap_slices(height, width, dilation, i, j)
        if slices is not None:
            out[slices[0]].addcmul_(x[slices[1]], taps[3 * i + j])


def _images_per_chunk(x: torch.Tensor) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, x[0].numel()))


def depthwise_3x3(
    x: torch.Tensor, weight: torch.Tensor, dilation: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The convolution of ``x`` (N, C, H, W) by ``weight`` (C, 1, 3, 3), padding = dilation,
    plus ``bias`` (C,) if given."""
    out = torch.empty_like(x)
    step = _images_per_chunk(x)
    for start in range(0, x.shape[0], step):
        chunk = slice(start, start + step)
        _convolve_into(x[chunk], weight, bias, dilation, out[chunk])
    return out


def depthwise_3x3_weight_grad(grad: torch.Tensor, x: torch.Tensor, dilation: int) -> torch.Tensor:
    """d(loss)/d(weight) of :func:`depthwise_3x3`: per tap, grad times the shifted input."""
    channels, (height, width) = x.shape[1], x.shape[-2:]
    result = x.new_zeros(3, 3, channels)
    for i in range(3):
        for j in range(3):
            slices = _tap_slices(height, width, dilation, i, j)
            if slices is not None:
                # A product and a sum over (N, H, W), not einsum, whose contraction copies
                # both strided slices channel-first (README: 10.7 -> 3.8 ms per backward).
                result[i, j] = (grad[slices[0]] * x[slices[1]]).sum(dim=(0, 2, 3))
    return result.permute(2, 0, 1).unsqueeze(1).contiguous()


class _Depthwise3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation = dilation
        return depthwise_3x3(x, weight, dilation)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        # Stride 1 and symmetric padding: the input gradient is the same convolution of
        # the output gradient with the kernel turned by 180 degrees.
        grad_x = (
            depthwise_3x3(grad, weight.flip(-1, -2), ctx.dilation)
            if ctx.needs_input_grad[0]
            else None
        )
        grad_w = (
            depthwise_3x3_weight_grad(grad, x, ctx.dilation) if ctx.needs_input_grad[1] else None
        )
        return grad_x, grad_w, None


class DilatedDepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, 3, padding=d, dilation=d, groups=C, bias=False)`` (same parameters
    and state dict) that runs :func:`depthwise_3x3` on float32 CPU tensors.

    ``_conv_forward(x, weight, bias)`` is ``nn.Conv2d``'s hook for convolving with other
    weights; a BatchNorm folded into them (``ConvBNReLU`` in inference) passes a bias.
    """

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__(
            channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False
        )

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if not self._use_taps(x):
            return F.conv2d(x, weight, bias, 1, self.padding, self.dilation, self.groups)
        dilation = self.dilation[0]
        if bias is None:
            return _Depthwise3x3.apply(x, weight, dilation)
        if torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or bias.requires_grad
        ):
            # The autograd function has no bias gradient; a separate add has one.
            return _Depthwise3x3.apply(x, weight, dilation) + bias.view(1, -1, 1, 1)
        return depthwise_3x3(x, weight, dilation, bias)

    def _use_taps(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.dim() == 4
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling()
        )
