"""The ablations pipeline: deep merge, variant parameters, and a tiny end-to-end study."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project
from kedro.io import DataCatalog, SharedMemoryDataCatalog
from kedro.pipeline import Pipeline
from kedro.runner import ParallelRunner, SequentialRunner

from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.params import ParameterError
from hrda_kedro.pipelines.ablations import create_pipeline
from hrda_kedro.pipelines.ablations.nodes import (
    build_ablation_table,
    check_variant_crops,
    check_variant_weights,
    deep_merge,
    run_metrics,
    validate_ablations,
    variant_groups,
    variant_parameters,
)
from hrda_kedro.pipelines.templates import GROUPS
from hrda_kedro.run_config import CONFIG_LOADER_ARGS
from hrda_kedro.runtime.models import model_from_checkpoint

PROJECT = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_thread")


VARIANTS = ("source_only", "daformer", "hrda", "hrda_fixed_attention", "hrda_mic", "naive_hr")
# The shipped configuration shrunk to seconds: 64x128 images, a tiny network, 2 iterations.
TINY = {
    "ingestion": {
        "workers": 1,
        "samples_per_domain": 1,
        "embedded": {
            "height": 64,
            "width": 128,
            "sizes": {"source_train": 3, "target_train": 2, "target_val": 2},
        },
    },
    "model": {
        "network": {"decoder_embed_dim": 16, "attention_embed_dim": 16},
        "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
        "inference": {"window_batch": 8},
    },
    "runtime": {"device": "cpu", "progress_bar": False},
    "ablations": {
        "seeds": [1, 2],
        "shared": {
            "warmup": {
                "iterations": 2,
                "source_batch_size": 1,
                "log_every": 1,
                "optimizer": {"warmup_iters": 1},
                "rare_class_sampling": {"min_pixels": 20, "reference_size": None},
            },
            "self_training": {
                "iterations": 2,
                "source_batch_size": 1,
                "target_batch_size": 1,
                "log_every": 1,
                "optimizer": {"warmup_iters": 1},
                "rare_class_sampling": {"min_pixels": 20, "reference_size": None},
                "pseudo_labels": {"margins": [2, 4, 2, 2], "margins_reference_size": None},
            },
        },
        # 192x192 does not fit 64x128 images; the scale and mode stay the shipped ones.
        "variants": {"naive_hr": {"model": {"hrda": {"context_crop": [48, 48]}}}},
    },
}


def shipped_parameters() -> dict:
    loader = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")
    return loader["parameters"]


def tiny_parameters() -> dict:
    return deep_merge(shipped_parameters(), TINY)


def test_deep_merge_merges_mappings_and_replaces_everything_else() -> None:
    base = {"hrda": {"scale": 2, "crop": [256, 256], "mode": "hrda"}, "lr": 1.0}
    merged = deep_merge(base, {"hrda": {"scale": 1, "crop": [192]}, "new": None})
    assert merged == {"hrda": {"scale": 1, "crop": [192], "mode": "hrda"}, "lr": 1.0, "new": None}
    assert base["hrda"]["scale"] == 2  # the inputs are left alone


def test_shipped_variants_override_the_base_groups() -> None:
    parameters = shipped_parameters()
    naive = variant_groups(parameters, "naive_hr")["model"]["hrda"]
    assert (naive["mode"], naive["scale"], naive["context_crop"]) == ("lr_only", 1, [192, 192])
    assert naive["detail_crop"] == parameters["model"]["hrda"]["detail_crop"]
    assert variant_groups(parameters, "daformer")["model"]["hrda"]["mode"] == "lr_only"
    fixed = variant_groups(parameters, "hrda_fixed_attention")["model"]["hrda"]
    assert (fixed["mode"], fixed["fixed_attention"]) == ("fixed_attention", 0.5)
    shared = parameters["ablations"]["shared"]
    hrda = variant_groups(parameters, "hrda")
    assert hrda["self_training"]["iterations"] == shared["self_training"]["iterations"]
    assert hrda["model"] == parameters["model"]


def test_variant_runtime_has_its_own_seed_and_work_dir() -> None:
    p = shipped_parameters()
    groups = variant_parameters(
        p["ablations"], p["model"], p["warmup"], p["self_training"], p["evaluation"],
        p["runtime"], variant="naive_hr", seed=2, groups=GROUPS,
    )  # fmt: skip
    assert groups["runtime"]["seed"] == 2
    assert groups["runtime"]["work_dir"] == "data/06_models/ablations/in_progress/naive_hr/seed_2"


def test_a_run_gets_only_the_groups_its_nodes_read() -> None:
    """No dangling parameter datasets: source-only reads no self-training parameters, a
    run that adapts another's warmup no warmup parameters."""
    nodes = {n.name: n for n in create_pipeline(parameters=shipped_parameters()).nodes}
    outputs = {
        variant: set(nodes[f"ablations.{variant}.seed_1.variant_parameters"].outputs)
        for variant in ("source_only", "hrda", "daformer")
    }
    prefix = "ablations.{}.seed_1.variant_"
    assert prefix.format("source_only") + "self_training" not in outputs["source_only"]
    assert prefix.format("source_only") + "warmup" in outputs["source_only"]
    assert prefix.format("hrda") + "warmup" not in outputs["hrda"]
    assert prefix.format("daformer") + "warmup" in outputs["daformer"]


def test_variants_with_the_same_warmup_share_it_per_seed() -> None:
    """Source-only, HRDA and HRDA + MIC start from one warmup (same model and warmup
    parameters); the LR-only, fixed-attention and naive-HR variants train their own."""
    pipeline = create_pipeline(parameters=shipped_parameters())
    trained_by = {n.namespace for n in pipeline.nodes if n.name.endswith(".train_source_only")}
    assert trained_by == {
        f"ablations.{v}.seed_{s}"
        for v in ("source_only", "daformer", "hrda_fixed_attention", "naive_hr")
        for s in (1, 2, 3)
    }
    nodes = {n.name: n for n in pipeline.nodes}
    for variant in ("hrda", "hrda_mic"):
        for seed in (1, 2, 3):
            train = nodes[f"ablations.{variant}.seed_{seed}.round_1.train"]
            assert f"ablations.source_only.seed_{seed}.source_only_model" in train.inputs
    naive = nodes["ablations.naive_hr.seed_1.round_1.train"]
    assert "ablations.naive_hr.seed_1.source_only_model" in naive.inputs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": {"hrda": {"model": {"hrda": {"scal": 1}}}}},
         "parameter ablations.variants.hrda.model.hrda.scal: unknown key"),
        ({"variants": {"naive_hr": {"model": {"hrda": {"context_crop": [190, 190]}}}}},
         "ablations.variants.naive_hr.model.hrda.context_crop: expected multiples of"),
        ({"variants": {"bad-name": {}}}, "must be a Python identifier"),
        ({"seeds": [1, 1]}, "parameter ablations.seeds: expected distinct seeds"),
        ({"variants": {"hrda": {"adapts": False}}}, "did you mean 'adapt'"),
        ({"shared": {"self_training": {"rounds": 0}}},
         r"ablations.variants.daformer.self_training.rounds: 0 for a variant that adapts; "
         "expected >= 1, or adapt: false"),
        ({"variants": {"hrda": {"self_training": {"rounds": 0}}}},
         "ablations.variants.hrda.self_training.rounds: 0 for a variant that adapts"),
        # Accepted and never read once: the table has its own keys for these.
        ({"shared": {"evaluation": {"class_subsets": {"s16": [0, 1]}}}},
         r"^parameter ablations.shared.evaluation.class_subsets: not read by the ablation "
         r"study \(its table uses ablations.class_subset\); expected one of predictions, "
         "max_images, progress_bar$"),
        ({"variants": {"hrda": {"evaluation": {"qualitative_images": 2}}}},
         r"^parameter ablations.variants.hrda.evaluation.qualitative_images: not read by the "
         "ablation study; expected one of"),
        # A run's own group written as a value: every command builds this graph.
        ({"_run": {"warmup": 1000}}, r"^parameter warmup: expected a mapping, got 1000$"),
        ({"_run": {"self_training": 5}}, r"^parameter self_training: expected a mapping, got 5$"),
    ],
)  # fmt: skip
def test_bad_ablation_parameters_are_named_at_run_start(overrides, message) -> None:
    run_groups = overrides.pop("_run", {})
    parameters = {**deep_merge(shipped_parameters(), {"ablations": overrides}), **run_groups}
    with pytest.raises(ParameterError, match=message):
        validate_ablations(parameters)
    # Building the graph must not fail: it is built for every pipeline, uda included.
    assert isinstance(create_pipeline(parameters=parameters), Pipeline)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": {"hrda": {"model": {"network": {"pretrained": "nowhere/mit_b0.pth"}}}}},
         r"^parameter ablations.variants.hrda.model.network.pretrained: pretrained weights "
         "path 'nowhere/mit_b0.pth' does not exist"),
        ({"shared": {"self_training": {"feature_distance": {"enabled": True,
                                                           "pretrained": "nowhere.pth"}}}},
         r"^parameter ablations.shared.self_training.feature_distance.pretrained: pretrained "
         "weights path 'nowhere.pth' does not exist"),
        ({"_run": {"model": {"network": {"pretrained": "nowhere.pth"}}}},
         r"^parameter model.network.pretrained: pretrained weights path 'nowhere.pth'"),
    ],
)  # fmt: skip
def test_a_variants_missing_weights_are_named_at_run_start(overrides, message) -> None:
    """A variant's own weights file was first read by its warmup node, hours into a study."""
    run_groups = overrides.pop("_run", {})
    parameters = {**deep_merge(shipped_parameters(), {"ablations": overrides}), **run_groups}
    validate_ablations(parameters)  # the schema is fine
    with pytest.raises(ParameterError, match=message):
        check_variant_weights(parameters)
    check_variant_weights(shipped_parameters())  # no weights asked for: nothing to check


def test_one_namespace_per_variant_and_seed_with_rounds_only_where_adapting() -> None:
    pipeline = create_pipeline(parameters=shipped_parameters())
    runs = {".".join(n.namespace.split(".")[:3]) for n in pipeline.nodes if n.namespace}
    assert runs == {f"ablations.{v}.seed_{s}" for v in VARIANTS for s in (1, 2, 3)}
    source_only = [n.name for n in pipeline.nodes if n.namespace == "ablations.source_only.seed_1"]
    assert not any("round_" in name for name in source_only)
    # A run's rounds are the self-training round template, nested as in ``uda``.
    names = {n.name: n for n in pipeline.nodes}
    train = names["ablations.hrda.seed_2.round_1.train"]
    assert train.namespace == "ablations.hrda.seed_2.round_1"
    assert train.func.keywords == {"stage": "round_1"}
    assert pipeline.outputs() >= {"ablation_table", "ablation_summary"}


def test_a_variant_set_to_null_in_an_environment_is_left_out(tmp_path: Path) -> None:
    """conf/local (or an environment) runs a subset: base's variants merge key by key."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    (conf / "local" / "parameters_ablations.yml").write_text(
        "ablations:\n  variants: {naive_hr: null, hrda_mic: null, hrda_fixed_attention: null}\n"
    )
    loader = OmegaConfigLoader(str(conf), **CONFIG_LOADER_ARGS)
    pipeline = create_pipeline(parameters=loader["parameters"])
    variants = {n.namespace.split(".")[1] for n in pipeline.nodes if n.namespace}
    assert variants == {"source_only", "daformer", "hrda"}


def test_runs_are_built_from_the_uda_templates() -> None:
    """A node added to the warmup, a round or the evaluation is in every ablation run."""
    from hrda_kedro.pipeline_registry import register_pipelines

    parameters = shipped_parameters()
    registered = register_pipelines(parameters)
    ablation = {n.name for n in registered["ablations"].nodes}
    run = "ablations.daformer.seed_1."  # trains its own warmup
    for pipeline in ("warmup", "self_training"):
        for node in registered[pipeline].nodes:
            if not node.name.startswith("round_2."):  # the variant adapts for one round
                assert run + node.name in ablation, node.name
    assert run + "evaluate" in ablation


def test_registry_lists_predict_and_ablations_outside_uda(monkeypatch) -> None:
    monkeypatch.chdir(PROJECT)
    from hrda_kedro.pipeline_registry import register_pipelines

    pipelines = register_pipelines()
    assert {"predict", "ablations"} <= set(pipelines)
    uda = {n.name for n in pipelines["uda"].nodes}
    assert not uda & {n.name for n in pipelines["predict"].nodes}
    assert not any(name.startswith("ablations.") for name in uda)


def _catalog(parameters: dict, pipeline: Pipeline, shared: bool = False) -> DataCatalog:
    """The shipped catalog with the run's parameters; ``shared``: the kind ``kedro run
    --runner=ParallelRunner`` builds."""
    loader = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")
    kind = SharedMemoryDataCatalog if shared else DataCatalog
    catalog = kind.from_config(loader["catalog"])
    for name in pipeline.inputs():
        if name.startswith("params:"):  # the rest are saved outputs of an earlier run
            catalog[name] = parameters[name.removeprefix("params:")]
    return catalog


@pytest.mark.slow
def test_tiny_study_runs_in_parallel_and_writes_every_variant_and_seed(
    tmp_path, monkeypatch
) -> None:
    """Independent runs: ``kedro run --pipeline=ablations --runner=ParallelRunner`` (the
    README's command) works; a second, sequential run trains nothing again.

    Without a session, as in a notebook (``%load_ext kedro.ipython`` configures the project):
    the workers register the project's hooks and the installed plugins' (kedro-mlflow's with
    the ``mlflow`` extra, which must then stay out of the way)."""
    configure_project("hrda_kedro")
    monkeypatch.chdir(tmp_path)  # the catalog's relative data/ paths land here
    parameters = tiny_parameters()
    pipeline = create_pipeline(parameters=parameters)
    catalog = _catalog(parameters, pipeline, shared=True)
    ParallelRunner(max_workers=2).run(pipeline, catalog)

    table = catalog.load("ablation_table")
    runs = table[table["seed"] != "mean"]
    assert sorted(zip(runs["variant"], runs["seed"].astype(int), strict=True)) == sorted(
        (v, s) for v in VARIANTS for s in (1, 2)
    )
    assert list(table[table["seed"] == "mean"]["variant"]) == list(VARIANTS)
    assert runs[["miou", "small_class_miou"]].notna().all().all()
    by_variant = runs.drop_duplicates("variant").set_index("variant")
    assert by_variant.loc["naive_hr", ["mode", "scale", "context_crop"]].tolist() == [
        "lr_only",
        1,
        "48x48",
    ]
    assert by_variant.loc["daformer", ["mode", "scale"]].tolist() == ["lr_only", 2]
    assert by_variant.loc["hrda_fixed_attention", "mode"] == "fixed_attention"
    assert by_variant.loc["hrda", "mode"] == "hrda"
    assert by_variant.loc["source_only", "model"] == "source_only"
    assert set(by_variant.drop(index="source_only")["model"]) == {"round_1"}

    # The override reached the trained network, not just the table.
    naive, _ = model_from_checkpoint(catalog.load("ablations.naive_hr.seed_2.round_1.model"), "t")
    assert (naive.scale, naive.mode) == (1, "lr_only")
    work = Path("data/06_models/ablations/in_progress")
    assert (work / "naive_hr" / "seed_2" / "round_1" / "state.pt").is_file()
    summary = catalog.load("ablation_summary")
    assert summary["variants"]["hrda"]["seeds"] == [1, 2]
    assert summary["small_classes"] == [
        "pole",
        "traffic light",
        "traffic sign",
        "person",
        "rider",
    ]

    # The paper-layout table: per variant the mean and spread over seeds of every class.
    per_class = catalog.load("ablation_per_class").set_index(["variant", "statistic"])
    assert list(per_class.index.get_level_values("variant")[::2]) == list(VARIANTS)
    assert set(per_class.loc["hrda"].index) == {"mean", "std"}
    assert list(per_class.columns[-20:]) == [*CITYSCAPES_CLASSES, "miou"]
    means = table[table["seed"] == "mean"].set_index("variant")["miou"].astype(float)
    assert per_class.xs("mean", level="statistic")["miou"].tolist() == pytest.approx(
        (100 * means).round(2).tolist(), abs=0.01
    )
    assert (per_class.loc["hrda", "seeds"] == 2).all()

    # A second run resumes from the work dirs: every stage is finished, none is trained again.
    states = sorted((work / "daformer" / "seed_1").glob("*/state.pt"))
    assert [p.parent.name for p in states] == ["round_1", "warmup"]
    written = [p.stat().st_mtime_ns for p in states]
    rerun = pipeline.only_nodes_with_namespaces(["ablations.daformer.seed_1"])
    SequentialRunner().run(rerun, _catalog(parameters, rerun))
    assert [p.stat().st_mtime_ns for p in states] == written
    # HRDA adapted source-only's warmup: it trained no warmup of its own.
    assert not (work / "hrda" / "seed_1" / "warmup").exists()


def _confusion(correct: int, wrong: int) -> list[list[int]]:
    """A 19-class confusion matrix: each class ``correct`` hits, ``wrong`` pixels as class 0."""
    cm = [[0] * 19 for _ in range(19)]
    for c in range(19):
        cm[c][c] += correct
        cm[c][0] += wrong
    return cm


def test_extra_targets_are_scored_as_the_papers_generalization_columns() -> None:
    """gta_dg's study (BDD100K, Mapillary beside Cityscapes) once reported Cityscapes only:
    each run's evaluation reads the extra targets, and the table has their mIoU, with a
    mean over seeds and its spread."""
    pipeline = create_pipeline(parameters=tiny_parameters())
    evaluations = [n for n in pipeline.nodes if n.name.endswith(".evaluate")]
    assert evaluations and all("extra_targets_manifest" in n.inputs for n in evaluations)

    ablations = shipped_parameters()["ablations"]
    final_model = {
        "stage": "round_1",
        "model_params": {
            "hrda": {"mode": "hrda", "scale": 2, "context_crop": [64, 64], "detail_crop": [32, 32]}
        },
    }
    metrics = []
    for seed, wrong in ((1, 0), (2, 1)):
        evaluation = {
            "images": 2,
            "confusion": {"fused": _confusion(3, 0)},
            "targets": {"bdd100k": {"images": 1, "confusion": {"fused": _confusion(1, wrong)}}},
        }
        metrics.append(run_metrics(evaluation, final_model, ablations, variant="hrda", seed=seed))
    # seed 2: 18 classes at IoU 1/2; class 0 at 2 / (2 + 18), the others' misses counted
    assert [m["miou_bdd100k"] for m in metrics] == pytest.approx([1.0, (18 * 0.5 + 0.1) / 19])
    table, summary = build_ablation_table(ablations, *metrics)
    mean = table[table["seed"] == "mean"].iloc[0]
    assert mean["miou_bdd100k"] == pytest.approx(np.mean([m["miou_bdd100k"] for m in metrics]))
    assert summary["variants"]["hrda"]["miou_bdd100k_std"] > 0


def test_a_variants_crop_larger_than_the_embedded_images_is_named_at_run_start() -> None:
    """naive HR's 192-pixel crop in a project of 64x128 images was refused by its own
    warmup node, after other variants had trained, and named the run's key."""
    small = {
        "ingestion": {"embedded": {"height": 64, "width": 128}},
        "model": {"hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]}},
    }
    parameters = deep_merge(shipped_parameters(), small)
    with pytest.raises(
        ParameterError,
        match=r"^parameter ablations\.variants\.naive_hr\.model\.hrda\.context_crop: the "
        r"context crop \[192, 192\] \(HxW\) does not fit in the 64x128 images",
    ):
        check_variant_crops(parameters)
    check_variant_crops(shipped_parameters())  # 256x512 images hold every variant's crop
