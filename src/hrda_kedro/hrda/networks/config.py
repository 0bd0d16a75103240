"""Validated description of the segmentation network to build."""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURES = ("daformer", "deeplabv2")
MIT_ENCODERS = ("mit-b0", "mit-b1", "mit-b2", "mit-b3", "mit-b4", "mit-b5", "mit-nano")
# resnet101: torchvision's 7x7 stem; resnet101-v1c: the official mmseg ResNetV1c deep stem.
ENCODERS_BY_ARCHITECTURE = {"daformer": MIT_ENCODERS, "deeplabv2": ("resnet101", "resnet101-v1c")}


def _check_positive_int(name: str, value: object) -> None:
    # bool is an int subclass; True as a channel count is a configuration mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"NetworkConfig.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class NetworkConfig:
    """What :func:`hrda_kedro.hrda.networks.build_network` builds.

    ``decoder_embed_dim``, ``attention_embed_dim`` and ``dropout`` configure the DAFormer
    heads; DeepLabV2's heads are single dilated-conv classifiers and ignore them.
    ``pretrained`` is a local file or folder (or a Hugging Face repo id already in the local
    cache) with ImageNet weights for the encoder; nothing is ever downloaded.
    """

    architecture: str = "daformer"
    encoder: str = "mit-b5"
    num_classes: int = 19
    decoder_embed_dim: int = 256
    attention_embed_dim: int = 256
    attention_classwise: bool = True
    dropout: float = 0.1
    pretrained: str | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"NetworkConfig.architecture must be one of {ARCHITECTURES}, "
                f"got {self.architecture!r}"
            )
        allowed = ENCODERS_BY_ARCHITECTURE[self.architecture]
        if self.encoder not in allowed:
            raise ValueError(
                f"NetworkConfig.encoder must be one of {allowed} for architecture "
                f"{self.architecture!r}, got {self.encoder!r}"
            )
        _check_positive_int("num_classes", self.num_classes)
        _check_positive_int("decoder_embed_dim", self.decoder_embed_dim)
        _check_positive_int("attention_embed_dim", self.attention_embed_dim)
        if not isinstance(self.attention_classwise, bool):
            raise ValueError(
                "NetworkConfig.attention_classwise must be true or false, "
                f"got {self.attention_classwise!r}"
            )
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, (int, float))
            or not 0.0 <= self.dropout < 1.0
        ):
            raise ValueError(f"NetworkConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.pretrained is not None and (
            not isinstance(self.pretrained, str) or not self.pretrained.strip()
        ):
            raise ValueError(
                "NetworkConfig.pretrained must be None or a non-empty local path, "
                f"got {self.pretrained!r}"
            )
