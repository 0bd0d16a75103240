"""The self-training settings check themselves on construction, naming their key."""

from __future__ import annotations

import pytest

from hrda_kedro.hrda.config import ConfigError
from hrda_kedro.hrda.training.config import (
    OptimizerConfig,
    RareClassSamplingConfig,
    TrainingConfig,
)
from hrda_kedro.hrda.uda.config import (
    FeatureDistanceConfig,
    PseudoLabelConfig,
    UDAConfig,
    check_margins,
)
from hrda_kedro.hrda.uda.mic import MaskingConfig
from hrda_kedro.params import SelfTrainingParams, parse


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: UDAConfig(ema_alpha=1.0), "ema_alpha"),
        (lambda: PseudoLabelConfig(threshold=1.5), "threshold"),
        (lambda: PseudoLabelConfig(margins=(0, -1, 0, 0)), "margins"),
        (lambda: PseudoLabelConfig(margins_reference_size=(0, 5)), "margins_reference_size"),
        (lambda: FeatureDistanceConfig(enabled=True), "pretrained"),
        (lambda: MaskingConfig(mask_ratio=1.0), "mask_ratio"),
        (lambda: MaskingConfig(loss_weight=-1.0), "lambda"),
        (lambda: TrainingConfig(log_every=0), "log_every"),
        (lambda: TrainingConfig(cat_max_ratio=0.0), "cat_max_ratio"),
        (lambda: PseudoLabelConfig(margins=(0, 0, 0)), "margins"),  # type: ignore[arg-type]
        (lambda: FeatureDistanceConfig(weight=-1.0), "weight"),
        (lambda: MaskingConfig(mask_block_size=0), "mask_block_size"),
        (lambda: MaskingConfig(mask_block_reference_size=(0, 0)), "mask_block_reference_size"),
        (lambda: OptimizerConfig(weight_decay=-0.01), "weight_decay"),
        (lambda: OptimizerConfig(head_lr_mult=-10.0), "head_lr_mult"),
        (lambda: OptimizerConfig(poly_power=0.0), "poly_power"),
        (lambda: OptimizerConfig(grad_clip=0.0), "grad_clip"),
        (lambda: OptimizerConfig(grad_clip=-1.0), "grad_clip"),
        (lambda: OptimizerConfig(betas=(0.9, 1.0)), "betas"),
        (lambda: OptimizerConfig(betas=(0.9,)), "betas"),  # type: ignore[arg-type]
        (lambda: RareClassSamplingConfig(reference_size=(0, 0)), "reference_size"),
        (lambda: RareClassSamplingConfig(reference_size=(1, 2, 3)), "reference_size"),  # type: ignore
    ],
)
def test_out_of_range_settings_raise_with_their_key(build, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build()
    assert err.value.key == key


def test_margins_must_leave_pixels_of_the_image() -> None:
    check_margins((30, 240, 30, 30), (1024, 2048))
    with pytest.raises(ConfigError, match=r"cover the whole 200x400 \(HxW\) image of x"):
        check_margins((30, 240, 30, 30), (200, 400), " of x")


def test_the_self_training_group_is_both_schemas_plus_rounds() -> None:
    params = parse(SelfTrainingParams, {"rounds": 3, "ema_alpha": 0.9, "log_every": 5}, "st")
    assert isinstance(params, UDAConfig) and isinstance(params, TrainingConfig)
    assert (params.rounds, params.ema_alpha, params.log_every) == (3, 0.9, 5)
