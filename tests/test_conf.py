"""The shipped configuration: every environment validates, and the recipes are the paper's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from hrda_kedro.hooks import validate_run_parameters
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.params import (
    PARAMETER_GROUPS,
    AblationParams,
    ParameterError,
    SelfTrainingParams,
    parse,
)
from hrda_kedro.pipelines.ablations.nodes import variant_groups
from hrda_kedro.run_config import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(
        conf_source=str(CONF),
        base_env="base",
        default_run_env=env,
        merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"],
    )
    return loader["parameters"]


@pytest.mark.parametrize("env", ["local", "gta2cs", "synthia2cs", "cityscapes_camera"])
def test_every_parameter_group_validates(env: str) -> None:
    parameters = _parameters(env)
    for group, cls in PARAMETER_GROUPS.items():
        parse(cls, parameters[group], group)


@pytest.mark.parametrize("env", ["gta2cs", "synthia2cs"])
def test_paper_recipe(env: str) -> None:
    parameters = _parameters(env)
    model = parse(ModelConfig, parameters["model"], "model")
    train = parse(SelfTrainingParams, parameters["self_training"], "self_training")
    assert model.network.encoder == "mit-b5" and model.network.decoder_embed_dim == 256
    assert model.hrda.context_crop == (1024, 1024) and model.hrda.detail_crop == (512, 512)
    assert model.hrda.scale == 2 and model.hrda.hr_loss_weight == 0.1
    assert model.hrda.hr_slide_overlapping
    assert train.iterations == 40000 and train.rounds == 1
    assert train.source_batch_size == 2 and train.target_batch_size == 2
    assert train.optimizer.lr == 6e-5 and train.optimizer.warmup_iters == 1500
    assert train.optimizer.head_lr_mult == 10 and train.ema_alpha == 0.999
    assert train.optimizer.no_decay == "official"  # mmcv custom_keys: encoder norms only
    assert train.pseudo_labels.threshold == 0.968
    assert train.feature_distance.enabled
    # soft merge: the environment keeps base keys it does not mention
    assert train.classmix and train.rare_class_sampling.temperature == 0.01
    # the official data rules (HRDA config, uda_gtaHR/synthiaHR_to_cityscapesHR datasets)
    rcs = train.rare_class_sampling
    assert rcs.min_pixels == 3000 and rcs.min_crop_ratio == 2.0
    assert train.cat_max_ratio == 0.75
    assert train.pseudo_labels.margins == (30, 240, 30, 30)
    assert train.pseudo_labels.margins_reference_size == (1024, 2048)


@pytest.mark.parametrize("env", ["gta2cs", "synthia2cs", "gta2cs_mic", "synthia2cs_mic", "gta_dg"])
def test_rare_class_thresholds_are_the_official_pixel_counts(env: str) -> None:
    """Officially an image is eligible with more than 3000 px of the class, counted on the
    native GTA5 / SYNTHIA labels, and a crop is kept with more than 2 x 3000 px in the
    resized crop. Scaled from 2560x1440 to the load size they were 2931 and 5862 on GTA5,
    3167 and 6334 on SYNTHIA."""
    from hrda_kedro.hrda.training.config import TrainingConfig
    from hrda_kedro.hrda.training.streams import rcs_min_pixels

    parameters = _parameters(env)
    load = {"gta5": (1407, 2560), "synthia": (1520, 2560)}
    source = parameters["ingestion_datasets"]["source_train"]["kind"]
    groups = {"warmup": TrainingConfig, "self_training": SelfTrainingParams}
    if parameters["self_training"]["rounds"] == 0:  # gta_dg: source-only, no target
        del groups["self_training"]
    for group, cls in groups.items():
        rcs = parse(cls, parameters[group], group).rare_class_sampling
        assert rcs_min_pixels(rcs, load[source]) == 3000, group
        assert rcs_min_pixels(rcs, load[source]) * rcs.min_crop_ratio == 6000, group


def test_environments_change_the_data_sources() -> None:
    gta = _parameters("gta2cs")["ingestion_datasets"]
    synthia = _parameters("synthia2cs")["ingestion_datasets"]
    assert gta["source_train"]["kind"] == "gta5"
    assert synthia["source_train"]["kind"] == "synthia"
    assert gta["target_val"]["kind"] == synthia["target_val"]["kind"] == "cityscapes"


# Every environment of conf/ (local holds a user's own overrides): ones added later are
# covered without touching this test.
ENVS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("base", "local"))
# The paper's setups: real data sets at the paper's scale (cityscapes_camera is not one).
RECIPE_ENVS = [env for env in ENVS if (CONF / env / "parameters_recipe.yml").is_file()]


def _environment(env: str | None) -> tuple[dict, dict]:
    """An environment's parameters (None: base alone) and the pipelines registered for it."""
    from hrda_kedro import pipeline_registry

    loader = OmegaConfigLoader(
        conf_source=str(CONF),
        base_env="base",
        default_run_env=env or "base",  # base alone: conf/local is a user's, not shipped
        merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"],
    )
    parameters = loader["parameters"]
    return parameters, pipeline_registry.register_pipelines(parameters)


def test_environments_are_discovered() -> None:
    assert {"gta2cs", "synthia2cs"} <= set(ENVS)


@pytest.mark.parametrize("env", [None, *ENVS])
def test_every_environment_validates_for_every_pipeline(env: str | None) -> None:
    parameters, pipelines = _environment(env)
    for name, pipeline in pipelines.items():
        if not pipeline.nodes:  # self_training with rounds: 0 (gta_dg) has nothing to run
            continue
        validated = validate_run_parameters(pipeline, parameters)
        reads = any(i == "parameters" or i.startswith("params:") for i in pipeline.inputs())
        assert validated or not reads, name
    # Each pipeline validates what its nodes read, and nothing of the pipelines not run.
    expected = {
        "runtime", "model", "warmup", "self_training", "evaluation", "ingestion",
        "ingestion_datasets",
    }  # fmt: skip
    if parameters["self_training"].get("rounds") == 0:  # gta_dg: no round, nothing reads it
        expected.discard("self_training")
    assert set(validate_run_parameters(pipelines["uda"], parameters)) == expected
    predict_groups = {"predict", "model", "runtime"}  # model: the run's test-time windows
    assert set(validate_run_parameters(pipelines["predict"], parameters)) == predict_groups
    assert set(validate_run_parameters(pipelines["export"], parameters)) == {"model"}
    assert "ablations" in validate_run_parameters(pipelines["ablations"], parameters)


@pytest.mark.parametrize("env", RECIPE_ENVS)
def test_recipe_ablations_are_scaled_to_the_recipe(env: str) -> None:
    from hrda_kedro.pipelines.ablations.nodes import variant_groups

    parameters, _ = _environment(env)
    naive = parse(ModelConfig, variant_groups(parameters, "naive_hr")["model"], "model")
    hrda = parse(ModelConfig, variant_groups(parameters, "hrda")["model"], "model")
    # The paper's naive HR: a 768 full-resolution crop, 1.5x HRDA's 512 detail side.
    assert naive.hrda.scale == 1 and naive.hrda.context_crop == (768, 768)
    assert naive.window == (768, 768) and hrda.window == (1024, 1024)
    assert hrda.hrda.context_crop == (1024, 1024) and hrda.hrda.detail_crop == (512, 512)
    st = parse(SelfTrainingParams, variant_groups(parameters, "hrda")["self_training"], "st")
    assert st.iterations == 40000


def test_a_pipeline_not_run_never_stops_a_run() -> None:
    parameters, pipelines = _environment("gta2cs")
    parameters["ablations"]["variants"]["naive_hr"]["model"]["hrda"]["context_crop"] = [190, 190]
    parameters["predict"]["overlay_alpha"] = 7
    validate_run_parameters(pipelines["uda"], parameters)  # neither is read by uda
    with pytest.raises(ParameterError, match=r"ablations\.variants\.naive_hr\.model\.hrda"):
        validate_run_parameters(pipelines["ablations"], parameters)
    with pytest.raises(
        ParameterError, match=r"predict\.overlay_alpha: expected 0 <= value <= 1, got 7"
    ):
        validate_run_parameters(pipelines["predict"], parameters)


def test_invalid_ablations_still_stop_the_ablations_run() -> None:
    """Bad top-level ablation values leave a graph that still reads params:ablations."""
    from hrda_kedro.pipelines.ablations import create_pipeline

    parameters, _ = _environment(None)
    parameters["ablations"]["seeds"] = [1, 1]
    with pytest.raises(ParameterError, match=r"ablations\.seeds: expected distinct seeds"):
        validate_run_parameters(create_pipeline(parameters=parameters), parameters)


def test_the_cityscapes_camera_environment_changes_the_camera_and_the_study_recipe_only() -> None:
    base, camera = _parameters("local"), _parameters("cityscapes_camera")
    embedded = camera["ingestion"]["embedded"]
    assert embedded["focal"] == 1.1 and base["ingestion"]["embedded"]["focal"] == 0.55
    assert embedded["root"] != base["ingestion"]["embedded"]["root"]  # no redraw on switching
    shared = camera["ablations"]["shared"]
    assert shared["self_training"]["iterations"] == 1800
    # the study distorts the source crops in both stages (the official gtaCAug placement)
    for stage in ("warmup", "self_training"):
        assert shared[stage]["augment"] == {"photometric_distortion": True}
        assert base["ablations"]["shared"][stage].get("augment") is None
        assert not base[stage]["augment"]["photometric_distortion"]  # the run's stays off
    # soft merge: the rest of the study and of the benchmark is conf/base's
    assert camera["ablations"]["variants"] == base["ablations"]["variants"]
    assert camera["ablations"]["seeds"] == base["ablations"]["seeds"]
    for key in ("domain_shift", "height", "width", "pixel_level_shift"):
        assert embedded[key] == base["ingestion"]["embedded"][key]
    # 200 target-val images (the first 40 are the 40 of conf/base's sizes at this camera):
    # the study evaluates them all, the uda run its first 40, as before
    base_sizes = base["ingestion"]["embedded"]["sizes"]
    assert embedded["sizes"] == {**base_sizes, "target_val": 200} and base_sizes["target_val"] == 40
    assert camera["evaluation"] == {**base["evaluation"], "max_images": 40}
    assert base["evaluation"]["max_images"] is None
    for variant in camera["ablations"]["variants"]:
        assert variant_groups(camera, variant)["evaluation"]["max_images"] is None
    for group in ("model", "warmup", "self_training"):
        assert camera[group] == base[group]


@pytest.mark.parametrize("env", [None, *ENVS])
def test_every_ablation_variant_is_a_run_of_its_own(env: str | None) -> None:
    """Two variants with the same effective settings train and score one model twice (at
    40k iterations on a GPU, hours): the *_mic recipes' MIC once reached every adapting
    variant, so hrda and hrda_mic were one run and no row was without MIC."""
    parameters, _ = _environment(env)
    settings = parse(AblationParams, parameters["ablations"], "ablations")
    runs: dict[str, str] = {}
    for name, spec in settings.variants.items():
        groups = variant_groups(parameters, name)
        adapting = groups["self_training"] if spec.adapt else None
        run = json.dumps(
            [spec.adapt, groups["model"], groups["warmup"], groups["evaluation"], adapting],
            sort_keys=True,
            default=str,
        )
        assert run not in runs, f"{env}: variant {name} is the same run as {runs[run]}"
        runs[run] = name
        if spec.adapt:  # MIC where the variant's name says so, and only there
            assert groups["self_training"]["mic"]["enabled"] == ("mic" in name), (env, name)


@pytest.mark.parametrize("env", [None, *ENVS])
def test_the_ablation_mean_is_the_literatures_class_subset(env: str | None) -> None:
    """The study reads ablations.class_subset, not evaluation.class_subsets: in the SYNTHIA
    environments its mIoU once averaged 19 classes, three of which SYNTHIA never labels."""
    parameters, _ = _environment(env)
    subsets = [s for s in parameters["evaluation"]["class_subsets"].values() if s is not None]
    expected = subsets[0] if subsets else None
    assert parameters["ablations"]["class_subset"] == expected
