"""ACDC, Dark Zurich, BDD100K and Mapillary layouts; the embedded benchmark at night;
source-only ingestion with extra labelled targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrda_kedro.data import DataError
from hrda_kedro.data.ingest import (
    EmbeddedSettings,
    IngestionDatasets,
    IngestionSettings,
    ingest,
)
from hrda_kedro.data.labels import MAPILLARY_ID_TO_TRAIN_ID, MAPILLARY_MAPPING
from hrda_kedro.data.layouts import DatasetSpec, find_pairs
from hrda_kedro.data.streets import SplitSizes, StreetsConfig, write_benchmark
from hrda_kedro.params import ParameterError, parse
from tests.data.benchmark_trees import (
    MAPILLARY_IDS,
    acdc_tree,
    bdd100k_tree,
    dark_zurich_tree,
    mapillary_label,
    mapillary_tree,
    trainid_label,
)
from tests.data.helpers import write_index


def _settings(tmp_path: Path) -> IngestionSettings:
    embedded = EmbeddedSettings(
        root=str(tmp_path / "embedded"), height=32, width=64, sizes=SplitSizes(3, 2, 2)
    )
    return IngestionSettings(cache_dir=str(tmp_path / "cache"), workers=1, embedded=embedded)


def test_acdc_pairs_the_selected_conditions(tmp_path: Path) -> None:
    root = acdc_tree(tmp_path / "acdc", "val")
    pairs, problems = find_pairs(DatasetSpec("acdc", str(root), subset="val"), root)
    assert not problems and len(pairs) == 8  # 4 conditions x 2, reference images left out
    assert {p.name.split("/")[1] for p in pairs} == {"fog", "night", "rain", "snow"}
    first = pairs[0]
    assert first.name == "val/fog/GOPR0400/GOPR0400_frame_00000"
    assert first.image.name == "GOPR0400_frame_00000_rgb_anon.png"
    assert first.label == root / "gt/fog/val/GOPR0400/GOPR0400_frame_00000_gt_labelTrainIds.png"
    spec = DatasetSpec("acdc", str(root), subset="val", conditions=["night", "snow"])
    pairs, _ = find_pairs(spec, root)
    assert {p.name.split("/")[1] for p in pairs} == {"night", "snow"} and len(pairs) == 4


def test_acdc_missing_condition_and_unpaired_files_name_the_expected_path(tmp_path: Path) -> None:
    root = acdc_tree(tmp_path / "acdc", "train", conditions=("fog",))
    spec = DatasetSpec("acdc", str(root), subset="train", conditions=["fog", "rain"])
    with pytest.raises(DataError, match=r"acdc/rgb_anon/rain/train: folder not found; expected "
                       r"the acdc images \(.*rgb_anon/rain/train/\*_rgb_anon\.png\)"):  # fmt: skip
        find_pairs(spec, root)
    label = root / "gt/fog/train/GOPR0401/GOPR0401_frame_00001_gt_labelTrainIds.png"
    label.unlink()
    spec = DatasetSpec("acdc", str(root), subset="train", conditions=["fog"])
    pairs, problems = find_pairs(spec, root)
    assert len(pairs) == 1 and str(problems[0]).endswith(f"image without a label; expected {label}")


def test_dark_zurich_reads_night_images_and_val_labels(tmp_path: Path) -> None:
    root = dark_zurich_tree(tmp_path / "dz", "train", labels=False, count=3)
    dark_zurich_tree(root, "val", labels=True)
    train, _ = find_pairs(DatasetSpec("dark_zurich", str(root), subset="train", labels=False), root)
    assert [p.name for p in train] == [f"train/GOPR0356/GOPR0356_frame_00{i:04d}" for i in range(3)]
    assert all(p.label is None and "/night/" in str(p.image) for p in train)
    val, problems = find_pairs(DatasetSpec("dark_zurich", str(root), subset="val"), root)
    assert len(val) == 2 and not problems and val[0].label.name.endswith("_gt_labelTrainIds.png")
    with pytest.raises(DataError, match=r"dz/gt/train/night: folder not found"):
        find_pairs(DatasetSpec("dark_zurich", str(root), subset="train"), root)


def test_bdd100k_pairs_jpeg_images_with_trainid_masks(tmp_path: Path) -> None:
    root = bdd100k_tree(tmp_path / "bdd", "val", count=3)
    pairs, problems = find_pairs(DatasetSpec("bdd100k", str(root), subset="val"), root)
    assert len(pairs) == 3 and not problems
    assert pairs[0].image.suffix == ".jpg" and pairs[0].name.startswith("val/")
    orphan = root / "labels/sem_seg/masks/val/zzz.png"
    write_index(orphan, trainid_label(6, 10, 0))
    _, problems = find_pairs(DatasetSpec("bdd100k", str(root), subset="val"), root)
    assert str(problems[0]) == (
        f"{orphan}: label without an image; expected an image {root}/images/10k/val/zzz.jpg"
    )


def test_mapillary_labels_map_to_the_19_classes_as_hrda_does(tmp_path: Path) -> None:
    table = MAPILLARY_ID_TO_TRAIN_ID
    assert len(table) == 25 and sorted(set(table.values())) == list(range(19))
    assert table[24] == table[41] == table[13] == 0  # lane marking and manhole are road
    assert table[45] == table[47] == 5 and table[20] == table[21] == table[22] == 12
    converted = MAPILLARY_MAPPING.convert(MAPILLARY_IDS)
    assert converted.tolist() == [table[i] for i in sorted(table)] + [255, 255]
    assert MAPILLARY_MAPPING.unknown_values(np.array([0, 65, 66])) == [66]

    root = mapillary_tree(tmp_path / "mapillary", "validation")
    bdd = bdd100k_tree(tmp_path / "bdd", "val")
    datasets = IngestionDatasets(
        DatasetSpec("embedded"),
        None,
        DatasetSpec("embedded"),
        extra_targets={
            "mapillary": DatasetSpec("mapillary", str(root), subset="validation"),
            "bdd100k": DatasetSpec("bdd100k", str(bdd), subset="val"),
        },
    )
    result = ingest(_settings(tmp_path), datasets)
    extra = result.manifests["extra_targets"]
    assert extra["split"].tolist() == ["mapillary"] * 2 + ["bdd100k"] * 2
    assert (extra["domain"] == "target").all() and len(result.manifests["target_train"]) == 0
    first = extra.iloc[0]
    expected = MAPILLARY_MAPPING.convert(mapillary_label(6, 27))
    assert np.array_equal(np.asarray(Image.open(first["label_path"])), expected)
    assert first["original_label_path"].endswith("validation/labels/__CRyFzoDOXn6unQ6a3DnQ0.png")
    bdd_row = extra.iloc[2]  # trainIds already: read in place, no converted copy
    assert bdd_row["label_path"] == bdd_row["original_label_path"]
    assert set(result.report["extra_targets"]) == {"mapillary", "bdd100k"}

    bad = mapillary_label(6, 27)
    bad[0, 0] = 70
    write_index(root / "validation/labels/__CRyFzoDOXn6unQ6a3DnQ0.png", bad, mode="P")
    with pytest.raises(DataError, match=r"__CRyFzoDOXn6unQ6a3DnQ0\.png.*70"):
        ingest(_settings(tmp_path), datasets)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "mapillary", "root": "m", "subset": "val"}, r"subset: expected training \| validation"),
        ({"kind": "bdd100k", "root": "b"}, r"subset: expected train \| val \| test for bdd100k"),
        ({"kind": "acdc", "root": "a", "subset": "val", "conditions": ["haze"]}, r"conditions: expected"),
        ({"kind": "acdc", "root": "a", "subset": "val", "conditions": []}, r"conditions: expected"),
        ({"kind": "cityscapes", "root": "c", "subset": "val", "conditions": ["fog"]}, r"only used with kind 'acdc'"),
        ({"kind": "embedded", "subset": "target_val_fog"}, r"subset: expected one of the embedded"),
    ],
)  # fmt: skip
def test_dataset_settings_are_checked(spec: dict, message: str) -> None:
    with pytest.raises((ParameterError, ValueError), match=message):
        parse(DatasetSpec, spec, "ingestion_datasets.target_val")


def test_extra_targets_are_checked() -> None:
    base = {
        "source_train": {"kind": "embedded"},
        "target_train": None,
        "target_val": {"kind": "embedded"},
    }
    for extra, message in [
        ({"target_val": {"kind": "embedded", "subset": "target_val"}}, r"extra_targets\.target_val: a target name"),
        ({"night": {"kind": "embedded"}}, r"extra_targets\.night\.subset: required"),
        ({"night": {"kind": "embedded", "subset": "target_val_night", "labels": False}}, r"needs labels"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse(IngestionDatasets, {**base, "extra_targets": extra}, "ingestion_datasets")
    parsed = parse(IngestionDatasets, base, "ingestion_datasets")
    assert parsed.target_train is None and parsed.extra_targets == {}


def test_night_target_is_the_target_val_scenes_at_night_and_changes_nothing_else(tmp_path):
    config = StreetsConfig(seed=2, height=48, width=96, sizes=SplitSizes(1, 1, 2))
    night = ("target_val_night",)
    # Without conditions, the fingerprint is the one from before they existed (here of the
    # configuration that was the default then), so a benchmark drawn then is reused as it is.
    then = StreetsConfig(domain_shift=1.0)
    assert then.fingerprint() == "15032ac9c17a7c6bbb104ee85aff2fded30acbdf"
    assert config.fingerprint(night) != config.fingerprint()
    write_benchmark(tmp_path / "plain", config)
    write_benchmark(tmp_path / "night", config, workers=2, conditions=night)
    drawn = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*.png"))
    for rel in drawn:  # every split bit-identical with and without the night subset
        assert (tmp_path / "plain" / rel).read_bytes() == (tmp_path / "night" / rel).read_bytes()
    for index in ("00000", "00001"):
        day = tmp_path / "night" / "target_val"
        dark = tmp_path / "night" / "target_val_night"
        assert (dark / "labels" / f"{index}.png").read_bytes() == (
            day / "labels" / f"{index}.png"
        ).read_bytes()
        day_rgb = np.asarray(Image.open(day / "images" / f"{index}.png"), dtype=np.float32)
        dark_rgb = np.asarray(Image.open(dark / "images" / f"{index}.png"), dtype=np.float32)
        assert dark_rgb.mean() < 0.45 * day_rgb.mean()  # night: far darker...
        assert dark_rgb[..., 2].mean() > dark_rgb[..., 0].mean()  # ...and bluish moonlight


def test_source_only_ingestion_with_the_night_target(tmp_path: Path) -> None:
    datasets = IngestionDatasets(
        DatasetSpec("embedded"),
        None,
        DatasetSpec("embedded"),
        extra_targets={"night": DatasetSpec("embedded", subset="target_val_night")},
    )
    result = ingest(_settings(tmp_path), datasets)
    assert (
        len(result.manifests["target_train"]) == 0 and "target_train" not in result.report["splits"]
    )
    night = result.manifests["extra_targets"]
    val = result.manifests["target_val"]
    assert night["split"].tolist() == ["night", "night"]
    assert [Path(p).parent.parent.name for p in night["image_path"]] == ["target_val_night"] * 2
    for a, b in zip(night["label_path"], val["label_path"], strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    again = ingest(_settings(tmp_path), datasets)
    assert again.report["embedded"]["generated"] is False
    assert again.report["extra_targets"]["night"]["checked"] == 0
