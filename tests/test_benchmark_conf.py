"""The benchmark environments carry HRDA's recipes and data sources."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from hrda_kedro.data.ingest import IngestionDatasets
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.params import PARAMETER_GROUPS, SelfTrainingParams, parse
from hrda_kedro.pipeline_registry import _rounds
from hrda_kedro.run_config import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"],
    )
    return loader["parameters"]


@pytest.mark.parametrize("env", ["cs2acdc", "cs2darkzurich", "gta_dg"])
def test_groups_validate_and_the_model_is_the_papers(env: str) -> None:
    parameters = _parameters(env)
    for group, cls in {**PARAMETER_GROUPS, "ingestion_datasets": IngestionDatasets}.items():
        parse(cls, parameters[group], group)
    model = parse(ModelConfig, parameters["model"], "model")
    assert model.network.encoder == "mit-b5" and model.network.pretrained
    assert model.hrda.context_crop == (1024, 1024) and model.hrda.detail_crop == (512, 512)
    assert model.hrda.hr_slide_overlapping
    assert model.window == (1024, 1024) and model.stride == (512, 512)


@pytest.mark.parametrize(("env", "target"), [("cs2acdc", "acdc"), ("cs2darkzurich", "dark_zurich")])
def test_cityscapes_to_adverse_conditions_recipe(env: str, target: str) -> None:
    parameters = _parameters(env)
    data = parse(IngestionDatasets, parameters["ingestion_datasets"], "ingestion_datasets")
    assert data.source_train.kind == "cityscapes" and data.source_train.subset == "train"
    assert data.target_train.kind == data.target_val.kind == target
    assert data.target_val.subset == "val" and data.extra_targets == {}
    for spec in (data.target_train, data.target_val):
        assert (spec.resize.width, spec.resize.height) == (1920, 1080)
    assert (data.source_train.resize.width, data.source_train.resize.height) == (2048, 1024)
    assert data.target_train.labels == (target == "acdc")  # Dark Zurich train has no labels
    train = parse(SelfTrainingParams, parameters["self_training"], "self_training")
    assert train.rounds == 1 and train.iterations == 40000 and train.ema_alpha == 0.999
    assert train.optimizer.lr == 6e-5 and train.optimizer.warmup_iters == 1500
    assert train.pseudo_labels.margins == (0, 0, 0, 0)  # HRDA: plcrop=False
    assert train.rare_class_sampling.temperature == 0.01
    assert train.rare_class_sampling.reference_size == (1024, 2048)  # 3000 px on Cityscapes
    assert train.feature_distance.enabled and train.classmix
    assert parse(TrainingConfig, parameters["warmup"], "warmup").iterations == 0


def test_domain_generalization_is_source_only_with_three_targets() -> None:
    parameters = _parameters("gta_dg")
    data = parse(IngestionDatasets, parameters["ingestion_datasets"], "ingestion_datasets")
    assert data.source_train.kind == "gta5" and data.target_train is None
    assert data.target_val.kind == "cityscapes" and data.target_val.subset == "val"
    assert {name: spec.kind for name, spec in data.extra_targets.items()} == {
        "bdd100k": "bdd100k",
        "mapillary": "mapillary",
    }
    assert _rounds(parameters) == 0  # the uda pipeline: ingestion, source-only, evaluation
    assert parameters["predict"]["checkpoint"] is None  # the catalog's final: source_only_model
    warmup = parse(TrainingConfig, parameters["warmup"], "warmup")
    assert warmup.iterations == 40000 and warmup.optimizer.lr == 6e-5
    assert warmup.optimizer.warmup_iters == 1500 and warmup.rare_class_sampling.temperature == 0.01


@pytest.mark.parametrize(
    "env", ["gta2cs", "gta2cs_mic", "synthia2cs", "synthia2cs_mic", "cs2acdc", "cs2darkzurich"]
)
def test_recipes_and_the_ablation_study_weigh_pseudo_labels_as_the_paper(env: str) -> None:
    """conf/base weighs pixels for its short run; the paper's runs weigh each image by a scalar."""
    parameters = _parameters(env)
    train = parse(SelfTrainingParams, parameters["self_training"], "self_training")
    assert train.pseudo_labels.weight == "scalar"
    shared = parameters["ablations"]["shared"]["self_training"]
    assert shared["pseudo_labels"]["weight"] == "scalar"
