"""DeepLabV2: dilated ResNet-101 (output stride 8) + ASPP classifier, as used by DAFormer/HRDA.

Dilations and paddings:

* encoder: torchvision ``resnet101(replace_stride_with_dilation=[False, True, True])``;
  layer3 keeps stride 1 with dilation 2, layer4 stride 1 with dilation 4 (each 3x3 conv
  padded by its dilation; the first block of each uses half, as mmseg's
  ``contract_dilation``), so layer4 gives 2048 channels at 1/8;
* stem: encoder ``resnet101`` keeps torchvision's 7x7 convolution; ``resnet101-v1c`` is
  the official one, mmseg's ``ResNetV1c`` deep stem (three 3x3 convolutions 3->32->32->64,
  the first with stride 2, each with BN and ReLU), loading mmcv's ``resnet101_v1c``
  ImageNet weights (``stem.0`` ... ``stem.7``, ``layer1`` ... ``layer4``; same block names
  as torchvision);
* classifier: the SUM of two 3x3 convs with bias at dilations 6 and 12, padded 6 and 12 so
  the output keeps the 1/8 grid (DAFormer's choice; the DeepLab paper uses 6/12/18/24);
* attention head: a second classifier of the same form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hrda_kedro.hrda.model_config import NetworkConfig

from .base import SegmentationNetwork
from .weights import load_checked, local_weights_file, read_state_dict

CLASSIFIER_DILATIONS = (6, 12)
# (in, out, stride) of mmseg's ResNetV1c deep-stem convolutions (stem_channels 64).
V1C_STEM = ((3, 32, 2), (32, 32, 1), (32, 64, 1))


def deep_stem() -> nn.Sequential:
    """mmseg ``ResNetV1c`` stem; Sequential indices give mmcv's keys (conv ``stem.0``, BN
    ``stem.1``, ReLU, conv ``stem.3``, ...). Convolutions are He-initialised like
    torchvision's."""
    layers: list[nn.Module] = []
    for in_channels, out_channels, stride in V1C_STEM:
        conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        layers += [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ResNet101Encoder(nn.Module):
    """Dilated ResNet-101 returning layer1..layer4 outputs (strides 4, 8, 8, 8).

    With ``v1c_stem=False`` module names equal torchvision's, so torchvision ImageNet state
    dicts load directly; with ``v1c_stem=True`` (the official DeepLabV2) they equal mmcv's
    ``ResNetV1c`` layout, so ``resnet101_v1c`` checkpoints load directly. The ``fc``
    classifier of either is ignored.
    """

    channels = (256, 512, 1024, 2048)

    def __init__(self, pretrained: str | None = None, *, v1c_stem: bool = False) -> None:
        super().__init__()
        # Deferred: torchvision's import loads torch._dynamo (2 s of every `kedro` command).
        from torchvision.models import resnet101

        net = resnet101(weights=None, replace_stride_with_dilation=[False, True, True])
        self.v1c_stem = v1c_stem
        if v1c_stem:
            self.stem = deep_stem()
        else:
            self.conv1, self.bn1, self.relu = net.conv1, net.bn1, net.relu
        self.maxpool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        if pretrained is not None:
            self.load_pretrained(pretrained)

    @property
    def layout(self) -> str:
        return "mmcv ResNetV1c" if self.v1c_stem else "torchvision ResNet-101"

    def load_pretrained(self, location: str) -> None:
        """Load a ResNet-101 state dict of this encoder's layout from a local file.

        A ``module.`` prefix (a DataParallel save) is removed, as mmcv's loader does.
        """
        path = local_weights_file(location, "ResNet-101")
        state = {k.removeprefix("module."): v for k, v in read_state_dict(path).items()}
        load_checked(self, state, path, f"ResNet-101 encoder ({self.layout})", ("fc.",))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.v1c_stem:
            x = self.maxpool(self.stem(images))
        else:
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
        self.encoder = ResNet101Encoder(
            config.pretrained, v1c_stem=config.encoder == "resnet101-v1c"
        )
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
