"""The shipped configuration: every environment validates, and the recipes are the paper's."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from hrda_kedro.params import PARAMETER_GROUPS, ModelParams, SelfTrainingParams, parse
from hrda_kedro.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(
        conf_source=str(CONF),
        base_env="base",
        default_run_env=env,
        merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"],
    )
    return loader["parameters"]


@pytest.mark.parametrize("env", ["local", "gta2cs", "synthia2cs"])
def test_every_parameter_group_validates(env: str) -> None:
    parameters = _parameters(env)
    for group, cls in PARAMETER_GROUPS.items():
        parse(cls, parameters[group], group)


@pytest.mark.parametrize("env", ["gta2cs", "synthia2cs"])
def test_paper_recipe(env: str) -> None:
    parameters = _parameters(env)
    model = parse(ModelParams, parameters["model"], "model")
    train = parse(SelfTrainingParams, parameters["self_training"], "self_training")
    assert model.network.encoder == "mit-b5" and model.network.decoder_embed_dim == 256
    assert model.hrda.context_crop == (1024, 1024) and model.hrda.detail_crop == (512, 512)
    assert model.hrda.scale == 2 and model.hrda.hr_loss_weight == 0.1
    assert train.iterations == 40000 and train.rounds == 1
    assert train.source_batch_size == 2 and train.target_batch_size == 2
    assert train.optimizer.lr == 6e-5 and train.optimizer.warmup_iters == 1500
    assert train.optimizer.head_lr_mult == 10 and train.ema_alpha == 0.999
    assert train.pseudo_labels.threshold == 0.968
    assert train.feature_distance.enabled
    # soft merge: the environment keeps base keys it does not mention
    assert train.classmix and train.rare_class_sampling.temperature == 0.01


def test_environments_change_the_data_sources() -> None:
    gta = _parameters("gta2cs")["ingestion_datasets"]
    synthia = _parameters("synthia2cs")["ingestion_datasets"]
    assert gta["source_train"]["kind"] == "gta5"
    assert synthia["source_train"]["kind"] == "synthia"
    assert gta["target_val"]["kind"] == synthia["target_val"]["kind"] == "cityscapes"
