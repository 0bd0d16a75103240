"""Settings of the self-training (UDA) part of a stage: teacher, pseudo-labels, ClassMix,
feature distance and MIC. A stage trains source-only when it is given none of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hrda_kedro.hrda.config import Config, require, require_positive_pair, setting
from hrda_kedro.hrda.uda.mic import MaskingConfig


def check_margins(
    margins: tuple[int, int, int, int], image_hw: tuple[int, int], where: str = ""
) -> None:
    """Margins (top, bottom, left, right) must leave pixels of an ``image_hw`` image: bands
    that cover it would give every pseudo-label the weight 0, silently, at every step."""
    top, bottom, left, right = margins
    height, width = image_hw
    require(
        top + bottom < height and left + right < width,
        "margins",
        f"the margins {list(margins)} (top, bottom, left, right) cover the whole "
        f"{height}x{width} (HxW) image{where}, so every pseudo-label would get weight 0; "
        "expected top + bottom < height and left + right < width",
    )


@dataclass
class PseudoLabelConfig(Config):
    """Where the pseudo-labels come from, how confident pixels weigh, which borders are
    ignored (the margins are pixels of a ``margins_reference_size`` image, or as given)."""

    source: Literal["online", "offline"] = "online"
    threshold: float = 0.968
    weight: Literal["scalar", "pixel"] = "pixel"  # conf/base; the paper (recipes): scalar
    margins: tuple[int, int, int, int] = (30, 240, 30, 30)
    margins_reference_size: tuple[int, int] | None = (1024, 2048)

    def validate(self) -> None:
        require(0.0 <= self.threshold <= 1.0, "threshold", f"expected 0..1, got {self.threshold}")
        require(
            len(self.margins) == 4 and min(self.margins) >= 0,
            "margins",
            "expected four non-negative pixels (top, bottom, left, right), "
            f"got {list(self.margins)}",
        )
        if self.margins_reference_size is not None:
            require_positive_pair(self.margins_reference_size, "margins_reference_size")
            check_margins(self.margins, self.margins_reference_size, " (margins_reference_size)")


@dataclass
class FeatureDistanceConfig(Config):
    """DAFormer's ImageNet feature distance on thing classes of the source crops."""

    enabled: bool = False
    weight: float = setting(0.005, ge=0)
    """Weight of the feature distance loss; a negative one would push features apart."""
    pretrained: str | None = None

    def validate(self) -> None:
        require(
            not self.enabled or self.pretrained is not None,
            "pretrained",
            "the ImageNet feature distance needs a local pretrained encoder path when enabled",
        )


@dataclass
class UDAConfig(Config):
    """The self-training part of a stage: an EMA teacher's (or materialized) pseudo-labels
    on ClassMix-ed target crops, optionally the feature distance and MIC."""

    ema_alpha: float = 0.99  # conf/base; the paper (recipes): 0.999
    classmix: bool = True
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    feature_distance: FeatureDistanceConfig = field(default_factory=FeatureDistanceConfig)
    mic: MaskingConfig = field(default_factory=MaskingConfig)

    def validate(self) -> None:
        require(
            0.0 <= self.ema_alpha < 1.0,
            "ema_alpha",
            f"expected 0 <= alpha < 1, got {self.ema_alpha}",
        )
