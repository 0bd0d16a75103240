"""DAFormer: MiT encoder + context-aware fusion decoder, and HRDA's scale-attention head.

Both heads embed every encoder level to a common width (a per-pixel linear layer, written
as a 1x1 conv with bias so it runs on channels-last feature maps without a permute),
upsample to the finest level (1/4) and concatenate. They differ in the fusion:

* segmentation head: ASPP-like block (1x1 branch + depthwise-separable 3x3 branches at
  dilations 6/12/18, each BN+ReLU) followed by a 3x3 bottleneck;
* attention head: SegFormer's MLP decoder, a 1x1 conv + BN + ReLU.

Convolutions followed by BN have no bias (BN's shift makes it redundant), as in the
official DAFormer; this is what gives the reference parameter counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from hrda_kedro.hrda.model_config import NetworkConfig

from .base import SegmentationNetwork
from .depthwise import DilatedDepthwiseConv2d
from .mit import MiTEncoder
from .pointwise import PointwiseConv2d

ASPP_DILATIONS = (6, 12, 18)


class ConvBNReLU(nn.Sequential):
    """Bias-free convolution + BatchNorm + ReLU, He-initialised for the ReLU.

    In inference (BatchNorm in eval mode, autograd off: the EMA teacher, prediction,
    evaluation) the BatchNorm is folded into the convolution's weight and bias, which
    saves a pass over the feature map: without it a full-image prediction took 1.10-1.12x
    as long on a 2-core CPU (``benchmarks/cpu_paths.py``; docs/performance.md). Same result
    up to float rounding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        if dilation > 1 and kernel_size == 3 and in_channels == out_channels == groups:
            conv: nn.Conv2d = DilatedDepthwiseConv2d(in_channels, dilation)
        elif kernel_size == 1 and groups == 1:
            conv = PointwiseConv2d(in_channels, out_channels, bias=False)
        else:
            conv = nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=dilation * (kernel_size // 2),
                dilation=dilation,
                groups=groups,
                bias=False,
            )
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm = self[0], self[1]
        if (
            norm.training
            or torch.is_grad_enabled()
            or norm.running_var is None
            or torch.compiler.is_compiling()  # the compiler folds and fuses on its own
        ):
            return super().forward(x)
        weight, bias = fuse_conv_bn_weights(
            conv.weight,
            conv.bias,
            norm.running_mean,
            norm.running_var,
            norm.eps,
            norm.weight,
            norm.bias,
        )
        return torch.relu_(conv._conv_forward(x, weight, bias))


class DepthwiseSeparableConv(nn.Sequential):
    """Dilated depthwise 3x3 then pointwise 1x1, each with BN + ReLU (cheap large context)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels, 3, dilation=dilation, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1),
        )


class ASPPFusion(nn.Module):
    """DAFormer's context-aware fusion: parallel dilated branches, concatenated, 3x3 bottleneck."""

    def __init__(
        self, in_channels: int, channels: int, dilations: Sequence[int] = ASPP_DILATIONS
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)]
            + [DepthwiseSeparableConv(in_channels, channels, d) for d in dilations]
        )
        self.bottleneck = ConvBNReLU(len(self.branches) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([branch(x) for branch in self.branches], dim=1))


class MultiLevelHead(nn.Module):
    """Embed each level, upsample to the finest one, concatenate, fuse, classify."""

    def __init__(
        self,
        in_channels: Sequence[int],
        embed_dim: int,
        out_channels: int,
        fusion: nn.Module,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(PointwiseConv2d(c, embed_dim) for c in in_channels)
        self.fusion = fusion
        # Whole-channel dropout, like the decode heads of mmsegmentation.
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = PointwiseConv2d(embed_dim, out_channels)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        embedded = []
        for embedding, feature in zip(self.embeddings, features, strict=True):
            x = embedding(feature)
            if x.shape[-2:] != size:
                x = upsample_features(x, size)
            embedded.append(x)
        return self.classifier(self.dropout(self.fusion(torch.cat(embedded, dim=1))))


def upsample_features(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Bilinear upsampling of a feature map to ``size``, in its own memory format.

    On the CPU torch's channels-first bilinear kernel is slow on these wide, small maps (64
    channels, 4-16 px to 32 px): without the channels-last detour (layout copies included)
    a full-image prediction took 1.0-1.19x as long (``benchmarks/cpu_paths.py``; README,
    Performance). Same values.
    """
    if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    x = x.contiguous(memory_format=torch.channels_last)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False).contiguous()


def daformer_head(
    in_channels: Sequence[int], embed_dim: int, num_classes: int, dropout: float
) -> MultiLevelHead:
    """DAFormer segmentation head (ASPP-like context-aware fusion)."""
    fusion = ASPPFusion(len(in_channels) * embed_dim, embed_dim)
    return MultiLevelHead(in_channels, embed_dim, num_classes, fusion, dropout)


def mlp_head(
    in_channels: Sequence[int], embed_dim: int, out_channels: int, dropout: float
) -> MultiLevelHead:
    """SegFormer MLP decoder; HRDA's light scale-attention head."""
    fusion = ConvBNReLU(len(in_channels) * embed_dim, embed_dim, 1)
    return MultiLevelHead(in_channels, embed_dim, out_channels, fusion, dropout)


class DAFormerNetwork(SegmentationNetwork):
    """MiT encoder + DAFormer head + scale-attention head, logits at 1/4."""

    output_stride = 4
    batch_independent_encoder = True  # MiT: LayerNorm and per-sample drop path only

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.num_classes = config.num_classes
        self.encoder = MiTEncoder(config.encoder, config.pretrained)
        channels = self.encoder.channels
        self.decode_head = daformer_head(
            channels, config.decoder_embed_dim, config.num_classes, config.dropout
        )
        attention_channels = config.num_classes if config.attention_classwise else 1
        self.attention_head = mlp_head(
            channels, config.attention_embed_dim, attention_channels, config.dropout
        )

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(images)

    def segment(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.decode_head(features)

    def attend(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.attention_head(features)
