"""The benchmark environments (cs2acdc, cs2darkzurich, gta_dg) through a KedroSession.

Without data each one starts with its recipe and stops at the data check, naming the
folder it expected; with tiny fake files in the real layouts (tests/data/benchmark_trees.py)
each runs end to end, MiT-nano and tiny crops swapped in by runtime parameters.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from hrda_kedro.data import DataError
from tests.conftest import TINY_PARAMS
from tests.data.benchmark_trees import (
    acdc_tree,
    bdd100k_tree,
    dark_zurich_tree,
    mapillary_tree,
    trainid_label,
)
from tests.data.helpers import cityscapes_tree, gta_tree
from tests.pipelines.test_recipes import stops_at_the_weights_then_the_data

SIZE = (64, 128)
FIT = {"width": SIZE[1], "height": SIZE[0], "keep_ratio": True}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# The recipes' MiT-B5 with ImageNet weights and 1024 windows, swapped for the tiny setup;
# the fused prediction only (no test here reads the context or detail rows).
TINY_RECIPE = _merge(
    TINY_PARAMS,
    {
        "model": {
            "network": {"encoder": "mit-nano", "pretrained": None},
            "inference": {"window": None, "stride": None, "window_batch": 4},
        },
        "evaluation": {"predictions": ["fused"], "qualitative_images": 1},
        "warmup": {"optimizer": {"warmup_iters": 1}, "cache_images": True},
        "self_training": {
            "optimizer": {"warmup_iters": 1},
            "feature_distance": {"enabled": False, "pretrained": None},
        },
    },
)


def _cityscapes(raw: Path, subset: str) -> None:
    ids = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33, 0])
    cityscapes_tree(raw / "cityscapes", subset, ids[trainid_label(*SIZE, seed=0) % 20])


def _latest(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern))
    assert found, pattern
    return found[-1]


def _run(project: Path, env: str, params: dict[str, Any], pipeline: str = "uda") -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("cs2acdc", "data/01_raw/cityscapes/leftImg8bit/train: folder not found"),
        ("cs2darkzurich", "data/01_raw/cityscapes/leftImg8bit/train: folder not found"),
        ("gta_dg", "data/01_raw/gta5/images: folder not found"),
    ],
)
def test_without_data_the_recipe_starts_and_stops_at_the_data_check(
    project_copy: Path, env: str, expected: str
) -> None:
    # The ablation study's naive-HR variant (a 192x192 context) cannot hold the recipes'
    # 512x512 detail crop; the run-start check validates it for every pipeline (to be scoped
    # to the ablations pipeline), so it is given a fitting detail crop here.
    ablations = {"variants": {"naive_hr": {"model": {"hrda": {"detail_crop": [64, 64]}}}}}
    params = {"runtime": {"progress_bar": False}, "ablations": ablations}
    with pytest.raises(DataError, match=expected):
        stops_at_the_weights_then_the_data(lambda: _run(project_copy, env, params), project_copy)
    assert not list((project_copy / "data").glob("0[5-8]_*/*"))  # nothing was written


def _tiny_splits(*splits: str) -> dict[str, Any]:
    return {"ingestion_datasets": {split: {"resize": FIT} for split in splits}}


@pytest.mark.slow
def test_cs2acdc_end_to_end_on_fake_acdc(project_copy: Path) -> None:
    raw = project_copy / "data" / "01_raw"
    _cityscapes(raw, "train")
    acdc_tree(raw / "acdc", "train", size=SIZE, per_condition=1)
    acdc_tree(raw / "acdc", "val", size=SIZE, per_condition=1)
    params = _merge(TINY_RECIPE, _tiny_splits("source_train", "target_train", "target_val"))
    params = _merge(params, {"self_training": {"rounds": 1}})
    _run(project_copy, "cs2acdc", params)

    data = project_copy / "data"
    val = pd.read_csv(data / "05_model_input" / "target_val_manifest.csv")
    assert sorted({n.split("/")[1] for n in val["name"]}) == ["fog", "night", "rain", "snow"]
    table = pd.read_csv(_latest("08_reporting/miou_table.csv/*/miou_table.csv", data))
    assert set(table["model"]) == {"source_only", "round_1"}
    assert set(table["target"]) == {"target_val"} and table["miou"].between(0, 1).all()
    quality = pd.read_csv(_latest("08_reporting/pseudo_label_quality.csv/*/*.csv", data))
    assert quality["round"].tolist() == ["round_1"]  # ACDC train labels measure them


@pytest.mark.slow
def test_cs2darkzurich_end_to_end_on_fake_dark_zurich(project_copy: Path) -> None:
    raw = project_copy / "data" / "01_raw"
    _cityscapes(raw, "train")
    dark_zurich_tree(raw / "dark_zurich", "train", labels=False, size=SIZE)
    dark_zurich_tree(raw / "dark_zurich", "val", labels=True, size=SIZE)
    params = _merge(TINY_RECIPE, _tiny_splits("source_train", "target_train", "target_val"))
    params = _merge(params, {"self_training": {"rounds": 1}})
    _run(project_copy, "cs2darkzurich", params)

    data = project_copy / "data"
    train = pd.read_csv(data / "05_model_input" / "target_train_manifest.csv")
    assert len(train) == 2 and train["label_path"].isna().all()  # night images, no labels
    table = pd.read_csv(_latest("08_reporting/miou_table.csv/*/miou_table.csv", data))
    assert set(table["model"]) == {"source_only", "round_1"}
    assert len(list((data / "07_model_output/round_1/pseudo_labels").rglob("*_label.png"))) == 2


@pytest.mark.slow
def test_gta_dg_trains_source_only_and_reports_every_target(project_copy: Path) -> None:
    raw = project_copy / "data" / "01_raw"
    gta_tree(raw / "gta5", ("00001", "00002", "00003"))
    _cityscapes(raw, "val")
    bdd100k_tree(raw / "bdd100k", "val", size=SIZE)
    mapillary_tree(raw / "mapillary", "validation", sizes=((48, 108), (60, 81)))
    params = _merge(TINY_RECIPE, _tiny_splits("source_train", "target_val"))
    extra = {"bdd100k": {"resize": FIT}, "mapillary": {"resize": FIT}}
    params = _merge(params, {"ingestion_datasets": {"extra_targets": extra}})
    # The fake GTA labels are 6x10: every class has a few pixels only.
    params = _merge(params, {"warmup": {"rare_class_sampling": {"min_pixels": 1}}})
    _run(project_copy, "gta_dg", params)

    data = project_copy / "data"
    assert not (data / "06_models" / "round_1").exists()  # no self-training
    table = pd.read_csv(_latest("08_reporting/miou_table.csv/*/miou_table.csv", data))
    assert set(table["model"]) == {"source_only"}
    fused = table[(table["prediction"] == "fused") & (table["classes"] == "all")]
    assert fused["target"].tolist() == ["target_val", "bdd100k", "mapillary"]
    per_class = pd.read_csv(_latest("08_reporting/per_class_iou.csv/*/per_class_iou.csv", data))
    assert set(per_class["target"]) == {"target_val", "bdd100k", "mapillary"}
    extra = pd.read_csv(data / "05_model_input" / "extra_targets_manifest.csv")
    assert extra["split"].tolist() == ["bdd100k"] * 2 + ["mapillary"] * 2
    assert (extra["load_width"] <= SIZE[1]).all() and (extra["load_height"] <= SIZE[0]).all()
    assert len(pd.read_csv(data / "05_model_input" / "target_train_manifest.csv")) == 0

    # predict and export read the final model, here the source-only one (no round_<k>.model).
    predict = {"predict": {"input_dir": str(raw / "cityscapes" / "leftImg8bit" / "val")}}
    _run(project_copy, "gta_dg", _merge(params, predict), pipeline="predict")
    _run(project_copy, "gta_dg", params, pipeline="export")
    assert list((data / "07_model_output" / "predict" / "labels").rglob("*.png"))
    exported = json.loads((data / "06_models" / "export" / "config.json").read_text())
    assert exported["stage"] == "source_only"
