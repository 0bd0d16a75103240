"""DeepLabV2: dilated ResNet-101 (output stride 8) + ASPP classifier, as used by DAFormer/HRDA.

Dilations and paddings:

* encoder: torchvision ``resnet101(replace_stride_with_dilation=[False, True, True])``;
  layer3 keeps stride 1 with dilation 2, layer4 stride 1 with dilation 4 (each 3x3 conv
  padded by its dilation), so layer4 gives 2048 channels at 1/8;
* classifier: the SUM of two 3x3 convs with bias at dilations 6 and 12, padded 6 and 12 so
  the output keeps the 1/8 grid (DAFormer's choice; the DeepLab paper uses 6/12/18/24);
* attention head: a second classifier of the same form.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet101

from .base import SegmentationNetwork
from .config import NetworkConfig
from .weights import load_checked, read_state_dict

CLASSIFIER_DILATIONS = (6, 12)


class ResNet101Encoder(nn.Module):
    """Dilated ResNet-101 returning layer1..layer4 outputs (strides 4, 8, 8, 8).

    Module names equal torchvision's, so torchvision ImageNet state dicts load directly
    (their ``fc`` classifier is ignored).
    """

    channels = (256, 512, 1024, 2048)

    def __init__(self, pretrained: str | None = None) -> None:
        super().__init__()
        net = resnet101(weights=None, replace_stride_with_dilation=[False, True, True])
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def load_pretrained(self, location: str) -> None:
        """Load a torchvision-layout ResNet-101 state dict from a local file."""
        path = Path(location).expanduser()
        if not path.is_file():
            raise ValueError(f"pretrained ResNet-101 weights file {path} does not exist")
        load_checked(self, read_state_dict(path), path, "ResNet-101 encoder", ("fc.",))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


class DilatedConvSum(nn.Module):
    """DeepLabV2 ASPP classifier: sum of parallel dilated 3x3 convs (with bias)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int] = CLASSIFIER_DILATIONS,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d) for d in dilations
        )
        for conv in self.convs:
            # Small initial logits, as in DeepLab.
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out += conv(x)  # in place is safe: conv backward does not need its output
        return out


class DeepLabV2Network(SegmentationNetwork):
    """ResNet-101 DeepLabV2 with an HRDA attention head, logits at 1/8."""

    output_stride = 8

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.num_classes = config.num_classes
        self.encoder = ResNet101Encoder(config.pretrained)
        in_channels = self.encoder.channels[-1]
        self.decode_head = DilatedConvSum(in_channels, config.num_classes)
        attention_channels = config.num_classes if config.attention_classwise else 1
        self.attention_head = DilatedConvSum(in_channels, attention_channels)

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(images)

    def segment(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.decode_head(features[-1])

    def attend(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.attention_head(features[-1])
