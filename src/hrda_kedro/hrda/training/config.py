"""Settings of one training stage (the source-only warmup or one self-training round).

The YAML groups ``warmup`` and ``self_training`` are parsed into these classes by the
project; a library user builds them directly. Each range check is declared once, here.
Defaults are the project's ``conf/base`` warmup (the embedded benchmark on a CPU; the
paper's values are in the recipe environments, e.g. ``conf/gta2cs``);
``tests/test_defaults.py`` keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hrda_kedro.hrda.config import Config, require, require_positive_pair, setting


@dataclass
class OptimizerConfig(Config):
    """AdamW with a linear warmup, then polynomial decay to 0."""

    lr: float = setting(6e-4, gt=0)
    head_lr_mult: float = setting(10.0, ge=0)
    """The heads' lr is ``lr`` x this; 0 freezes them, a negative value would ascend."""
    weight_decay: float = setting(0.01, ge=0)
    no_decay: Literal["official", "norms_biases_positional"] = "norms_biases_positional"
    """Parameters without weight decay: the official configs' (``norm`` in an encoder
    parameter's name) or every bias, norm and positional convolution (optim.py)."""
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = setting(30, ge=0)
    poly_power: float = setting(1.0, gt=0)
    """Exponent of the decay ``(1 - step / iterations) ** poly_power`` (the scheduler needs > 0)."""
    grad_clip: float | None = None
    """Maximum gradient norm; null clips nothing (0 would zero every gradient, a negative
    norm flip it)."""

    def validate(self) -> None:
        require(
            self.grad_clip is None or self.grad_clip > 0,
            "grad_clip",
            f"expected null (no clipping) or a gradient norm > 0, got {self.grad_clip}",
        )
        betas = tuple(self.betas)
        require(
            len(betas) == 2 and all(0 <= b < 1 for b in betas),
            "betas",
            f"expected two numbers 0 <= beta < 1 (Adam's moment decays), got {list(betas)}",
        )


@dataclass
class RareClassSamplingConfig(Config):
    """DAFormer's rare class sampling of source images, and HRDA's re-cropping rule."""

    enabled: bool = True
    temperature: float = setting(0.01, gt=0)
    min_pixels: int = setting(3000, ge=1)
    reference_size: tuple[int, int] | None = (1440, 2560)
    """min_pixels is scaled from this (H, W) to the actual image size; null keeps it as is."""
    min_crop_ratio: float = setting(2.0, ge=0)
    """The crop is re-drawn (up to 10 times) until it holds more than min_pixels x this of
    the sampled class (HRDA: 2.0; DAFormer: 0.5); 0 keeps the first crop."""

    def validate(self) -> None:
        if self.reference_size is not None:
            require_positive_pair(self.reference_size, "reference_size")


@dataclass
class AugmentConfig(Config):
    """Flips of every crop; DACS colour jitter and blur of the images the student learns the
    pseudo-labels from (mixed and MIC images), or, in a source-only stage, of the source
    crops; optionally mmseg's photometric distortion of the source crops."""

    flip: bool = True
    color_jitter: bool = False
    color_jitter_p: float = setting(0.8, ge=0, le=1)
    color_jitter_strength: float = setting(0.2, ge=0, le=0.5)  # strong_augment's range
    blur: bool = False
    blur_p: float = setting(0.5, ge=0, le=1)
    photometric_distortion: bool = False
    """mmseg's ``PhotoMetricDistortion`` of every source crop, in any stage (the official
    source-only and augmented-source pipelines; not in the DACS recipe):
    :mod:`~hrda_kedro.hrda.training.photometric`."""


@dataclass
class TrainingConfig(Config):
    """One training stage: iterations, batches, optimiser, sampling and the loop's rhythm."""

    iterations: int = setting(1500, ge=0)
    source_batch_size: int = setting(2, ge=1)
    target_batch_size: int = setting(2, ge=1)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    rare_class_sampling: RareClassSamplingConfig = field(default_factory=RareClassSamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    checkpoint_every: int = setting(100, ge=1)
    log_every: int = setting(10, ge=1)
    decode_threads: int = setting(2, ge=1)
    cache_images: bool = True
    cat_max_ratio: float = 0.75
    """Source crops are re-drawn (up to 10 times) while one class covers this share of their
    labelled pixels or more (official GTA5/SYNTHIA configs: 0.75); 1 turns it off."""

    def validate(self) -> None:
        require(
            0 < self.cat_max_ratio <= 1,
            "cat_max_ratio",
            f"expected 0 < ratio <= 1, got {self.cat_max_ratio}",
        )
