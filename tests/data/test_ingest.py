import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from hrda_kedro.data import DataError
from hrda_kedro.data.ingest import (
    MANIFEST_COLUMNS,
    EmbeddedSettings,
    IngestionDatasets,
    IngestionSettings,
    class_frequencies,
    ingest,
)
from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.data.layouts import DatasetSpec, ResizeSpec
from hrda_kedro.data.streets import SplitSizes
from hrda_kedro.hrda.config import ConfigError
from tests.data.helpers import (
    GTA_TRAIN,
    SYNTHIA_TRAIN,
    cityscapes_tree,
    gta_tree,
    synthia_tree,
    truncate,
    write_index,
    write_rgb,
)

CS_IDS = np.arange(34).reshape(2, 17)


def _settings(tmp_path: Path, **kwargs) -> IngestionSettings:
    embedded = EmbeddedSettings(
        root=str(tmp_path / "embedded"), height=32, width=64, sizes=SplitSizes(3, 2, 2)
    )
    return IngestionSettings(
        cache_dir=str(tmp_path / "cache"), workers=2, embedded=embedded, **kwargs
    )


def _real(tmp_path: Path) -> IngestionDatasets:
    gta = gta_tree(tmp_path / "gta")
    cs = cityscapes_tree(tmp_path / "cs", "train", CS_IDS)
    cityscapes_tree(cs, "val", CS_IDS)
    return IngestionDatasets(
        DatasetSpec("gta5", str(gta), resize=ResizeSpec(20, 10)),
        DatasetSpec("cityscapes", str(cs), subset="train"),
        DatasetSpec("cityscapes", str(cs), subset="val"),
    )


def _trainids(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_real_layouts_convert_pixel_exact(tmp_path):
    result = ingest(_settings(tmp_path), _real(tmp_path))
    gta = result.manifests["source_train"]
    assert tuple(gta.columns) == MANIFEST_COLUMNS
    for path in gta["label_path"]:  # GTA id 33 -> 18, 7 -> 0, ..., 0 -> 255
        np.testing.assert_array_equal(_trainids(path), GTA_TRAIN)
    assert gta.loc[0, "label_path"].startswith(str(tmp_path / "cache"))
    assert gta.loc[0, "original_label_path"] == str(tmp_path / "gta" / "labels" / "00001.png")
    assert (gta[["height", "width", "load_height", "load_width"]].iloc[0].tolist()) == [
        6,
        10,
        10,
        17,
    ]
    assert set(gta["domain"]) == {"source"} and set(gta["split"]) == {"source_train"}
    official = np.vectorize(
        lambda i: 255 if id2label[i].trainId in (-1, 255) else id2label[i].trainId
    )(CS_IDS)
    for split in ("target_train", "target_val"):
        manifest = result.manifests[split]
        assert len(manifest) == 2 and set(manifest["domain"]) == {"target"}
        for path in manifest["label_path"]:
            np.testing.assert_array_equal(_trainids(path), official)
    counts = result.class_pixel_counts["source_train"]
    assert counts.loc[0, "bicycle"] == 3 and counts.loc[0, "road"] == 3
    assert counts.iloc[:, 1:].to_numpy().sum() == 2 * 57  # 3 of 60 pixels are ignored (id 0)


def test_synthia_16bit_first_channel(tmp_path):
    root = synthia_tree(tmp_path / "syn")
    datasets = _real(tmp_path)
    datasets = IngestionDatasets(
        DatasetSpec("synthia", str(root)), datasets.target_train, datasets.target_val
    )
    manifest = ingest(_settings(tmp_path), datasets).manifests["source_train"]
    for path in manifest[
        "label_path"
    ]:  # SYNTHIA 21 -> 3 (wall), 11 -> 18, 16/18/20 -> 9/14/16 (official)
        np.testing.assert_array_equal(_trainids(path), SYNTHIA_TRAIN)


def test_generic_folder_with_class_map(tmp_path):
    write_rgb(tmp_path / "own" / "images" / "a.jpg")
    write_index(tmp_path / "own" / "labels" / "a.png", np.array([[0, 1, 2] * 3] * 2))
    spec = DatasetSpec("folder", str(tmp_path / "own"), class_map={0: "ignore", 1: "person", 2: 13})
    datasets = IngestionDatasets(spec, DatasetSpec("embedded"), DatasetSpec("embedded"))
    with pytest.raises(
        DataError, match=r"a.png: label is 9x2 \(WxH\) but its image .*a.jpg is 10x6"
    ):
        ingest(_settings(tmp_path), datasets)
    write_index(tmp_path / "own" / "labels" / "a.png", np.array([[0, 1, 2, 2, 2] * 2] * 6))
    manifest = ingest(_settings(tmp_path), datasets).manifests["source_train"]
    assert _trainids(manifest.loc[0, "label_path"])[0, :3].tolist() == [255, 11, 13]


def test_another_class_map_is_other_training_data(tmp_path):
    """The same files under another ``class_map`` once kept their content digest, so the
    stages resumed on a model trained with the old classes."""
    from hrda_kedro.runtime.fingerprints import manifest_digest

    write_rgb(tmp_path / "own" / "images" / "a.jpg")
    write_index(tmp_path / "own" / "labels" / "a.png", np.array([[0, 1, 2, 2, 2] * 2] * 6))

    def digest(class_map: dict) -> str:
        spec = DatasetSpec("folder", str(tmp_path / "own"), class_map=class_map)
        datasets = IngestionDatasets(spec, DatasetSpec("embedded"), DatasetSpec("embedded"))
        return manifest_digest(ingest(_settings(tmp_path), datasets).manifests["source_train"])

    vegetation = digest({0: "ignore", 1: "person", 2: "vegetation"})
    assert digest({0: "ignore", 1: "person", 2: "terrain"}) != vegetation
    assert digest({0: "ignore", 1: "person", 2: "vegetation"}) == vegetation


def test_user_folders_sharing_one_root_keep_their_own_labels_and_class_maps(tmp_path):
    """Pairs of a user's folder are named by file stem: two splits on one root (train/ and
    val/ beside each other) once shared one label cache, so the second's labels replaced
    the first's and the first's class map converted both."""
    root = tmp_path / "shared"
    for sub, value in (("train", 1), ("val", 2)):
        for name in ("000", "001"):
            write_rgb(root / sub / "images" / f"{name}.png")
            write_index(root / sub / "labels" / f"{name}.png", np.full((6, 10), value))

    def split(sub: str, class_map: dict) -> DatasetSpec:
        dirs = {"image_dir": f"{sub}/images", "label_dir": f"{sub}/labels"}
        return DatasetSpec("folder", str(root), class_map=class_map, **dirs)

    datasets = IngestionDatasets(
        split("train", {1: "road", 2: "sidewalk"}),
        DatasetSpec("embedded"),
        split("val", {1: "road", 2: "car"}),
    )
    manifests = ingest(_settings(tmp_path), datasets).manifests
    for name, train_id in (("source_train", 0), ("target_val", 13)):
        for path in manifests[name]["label_path"]:
            assert np.unique(_trainids(path)).tolist() == [train_id], (name, path)


def test_a_photo_checked_before_exif_orientations_were_applied_is_checked_again(tmp_path):
    """The label cache kept each image's size: a rotated photo ingested by an older version
    kept its stored (sideways) size while training now reads it upright."""
    photos = tmp_path / "photos" / "images"
    photos.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    Image.new("RGB", (128, 64)).save(photos / "p.jpg", exif=exif)
    target = DatasetSpec("folder", str(tmp_path / "photos"), labels=False)
    datasets = IngestionDatasets(DatasetSpec("embedded"), target, DatasetSpec("embedded"))

    def sizes() -> list[int]:
        manifest = ingest(_settings(tmp_path), datasets).manifests["target_train"]
        return manifest.loc[0, ["height", "width"]].tolist()

    assert sizes() == [128, 64]
    (index,) = (tmp_path / "cache").glob("folder-photos-*/index.json")
    old = json.loads(index.read_text())
    for record in old["records"].values():  # as an older version wrote it
        record.update(height=64, width=128)
        del record["upright"]
    index.write_text(json.dumps(old))
    assert sizes() == [128, 64]


def test_unlabelled_folder_needs_no_class_map(tmp_path):
    """A user's own target images without labels (``labels: false``) and without a class
    map (which only labels need) are ingested; the map's absence once crashed ingestion."""
    write_rgb(tmp_path / "photos" / "images" / "a.jpg")
    target = DatasetSpec("folder", str(tmp_path / "photos"), labels=False)
    target.validate()
    datasets = IngestionDatasets(DatasetSpec("embedded"), target, DatasetSpec("embedded"))
    manifest = ingest(_settings(tmp_path), datasets).manifests["target_train"]
    assert manifest["image_path"].tolist() == [str(tmp_path / "photos" / "images" / "a.jpg")]
    assert manifest["label_path"].isna().all()


def test_a_folder_of_subfolders_says_the_layout_is_flat(tmp_path):
    write_rgb(tmp_path / "photos" / "images" / "city_a" / "a.jpg")
    target = DatasetSpec("folder", str(tmp_path / "photos"), labels=False)
    datasets = IngestionDatasets(DatasetSpec("embedded"), target, DatasetSpec("embedded"))
    with pytest.raises(
        DataError, match=r"directly in \S+/photos/images \(the folder layout is flat"
    ):
        ingest(_settings(tmp_path), datasets)


def test_what_a_users_folder_holds_and_ingestion_does_not_read_is_named(tmp_path, caplog):
    """Pairs in subfolders and .tif images were left out without a word (the layout is
    flat and reads .png, .jpg and .jpeg); a folder of only those said "empty"."""
    own = tmp_path / "own"
    write_rgb(own / "images" / "a.jpg")
    write_index(own / "labels" / "a.png", np.zeros((6, 10)))
    for name in ("city a/b.jpg", "c.tif", "d.bmp"):
        write_rgb(own / "images" / name)
    write_index(own / "labels" / "city a" / "b.png", np.zeros((6, 10)))
    spec = DatasetSpec("folder", str(own), class_map={0: "road"})
    datasets = IngestionDatasets(spec, DatasetSpec("embedded"), DatasetSpec("embedded"))
    with caplog.at_level("WARNING", logger="hrda_kedro"):
        manifest = ingest(_settings(tmp_path), datasets).manifests["source_train"]
    assert manifest["name"].tolist() == ["a"]
    assert (
        f"source_train: {own / 'images'}: not read: subfolders city a/ (the folder layout is "
        "flat); files not ending in .png or .jpg or .jpeg: c.tif, d.bmp"
    ) in caplog.text
    assert f"{own / 'labels'}: not read: subfolders city a/" in caplog.text

    photos = tmp_path / "photos"
    write_rgb(photos / "images" / "e.tif")
    target = DatasetSpec("folder", str(photos), labels=False)
    datasets = IngestionDatasets(DatasetSpec("embedded"), target, DatasetSpec("embedded"))
    with pytest.raises(
        DataError,
        match=r"split 'target_train' is empty; expected at least one folder image \(read: "
        r"images \.png \| \.jpg \| \.jpeg\)$",
    ):
        ingest(_settings(tmp_path), datasets)


def test_embedded_benchmark_and_a_rerun_that_does_no_work(tmp_path):
    settings = _settings(tmp_path)
    datasets = IngestionDatasets(
        DatasetSpec("embedded"), DatasetSpec("embedded"), DatasetSpec("embedded")
    )
    first = ingest(settings, datasets)
    assert first.report["embedded"]["generated"] is True
    assert [len(first.manifests[s]) for s in ("source_train", "target_train", "target_val")] == [
        3,
        2,
        2,
    ]
    source = first.manifests["source_train"]
    assert source.loc[0, "image_path"] == str(
        tmp_path / "embedded" / "source_train" / "images" / "00000.png"
    )
    assert source.loc[0, "label_path"] == str(
        tmp_path / "embedded" / "source_train" / "labels" / "00000.png"
    )
    assert first.report["splits"]["source_train"]["checked"] == 3
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    second = ingest(settings, datasets)
    assert second.report["embedded"]["generated"] is False
    assert all(
        r["checked"] == 0 and r["reused_from_cache"] > 0 for r in second.report["splits"].values()
    )
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps
    for split in first.manifests:
        assert first.manifests[split].equals(second.manifests[split])
        assert first.class_pixel_counts[split].equals(second.class_pixel_counts[split])
    json.dumps(second.report)  # the report is stored as JSON


def test_cached_conversion_is_redone_only_for_changed_files(tmp_path):
    settings, datasets = _settings(tmp_path), _real(tmp_path)
    ingest(settings, datasets)
    write_index(tmp_path / "gta" / "labels" / "00002.png", np.full((6, 10), 26))
    report = ingest(settings, datasets).report["splits"]
    assert (
        report["source_train"]["checked"] == 1 and report["source_train"]["reused_from_cache"] == 1
    )
    assert report["target_val"]["checked"] == 0
    converted = next((tmp_path / "cache").glob("gta5-*")) / "labels" / "00002.png"
    assert (_trainids(str(converted)) == 13).all()


def test_a_failed_run_overwrites_nothing(tmp_path):
    settings, datasets = _settings(tmp_path), _real(tmp_path)
    first = ingest(settings, datasets)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    write_index(
        tmp_path / "gta" / "labels" / "00001.png", np.full((6, 10), 26)
    )  # would be re-converted
    truncate(
        tmp_path / "cs" / "leftImg8bit" / "val" / "bonn" / "bonn_000000_000011_leftImg8bit.png"
    )
    with pytest.raises(
        DataError, match="bonn_000000_000011_leftImg8bit.png: cannot decode, truncated or corrupt"
    ):
        ingest(settings, datasets)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "cache" in p.parts}
    assert after == {p: b for p, b in before.items() if "cache" in p.parts}
    assert not list(tmp_path.rglob(".*staging*"))
    np.testing.assert_array_equal(
        _trainids(first.manifests["source_train"].loc[0, "label_path"]), GTA_TRAIN
    )


def test_a_failed_run_keeps_the_previous_embedded_benchmark(tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    datasets = IngestionDatasets(
        DatasetSpec("embedded"),
        DatasetSpec("embedded"),
        DatasetSpec("gta5", str(tmp_path / "nope")),
    )
    ok = IngestionDatasets(
        DatasetSpec("embedded"), DatasetSpec("embedded"), DatasetSpec("embedded")
    )
    ingest(settings, ok)
    before = {p: p.read_bytes() for p in (tmp_path / "embedded").rglob("*") if p.is_file()}
    reseeded = IngestionSettings(cache_dir=settings.cache_dir, embedded=EmbeddedSettings(
        root=settings.embedded.root, seed=9, height=32, width=64, sizes=SplitSizes(3, 2, 2)))  # fmt: skip
    with pytest.raises(DataError, match="nope/images: folder not found"):
        ingest(reseeded, datasets)
    assert {p: p.read_bytes() for p in (tmp_path / "embedded").rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.rglob(".*") if "staging" in p.name or ".old-" in p.name]
    assert ingest(reseeded, ok).report["embedded"]["generated"] is True


def test_skip_mode_lists_bad_files(tmp_path):
    datasets = _real(tmp_path)
    (tmp_path / "gta" / "labels" / "00002.png").unlink()
    write_rgb(tmp_path / "gta" / "labels" / "00003.png")
    write_rgb(tmp_path / "gta" / "images" / "00004.png")
    write_index(tmp_path / "gta" / "labels" / "00004.png", np.full((6, 10), 99))
    with pytest.raises(DataError, match="00002.png: image without a label"):
        ingest(_settings(tmp_path), datasets)
    result = ingest(_settings(tmp_path, skip_bad_files=True), datasets)
    assert result.manifests["source_train"]["name"].tolist() == ["00001"]
    skipped = result.report["splits"]["source_train"]["skipped"]
    assert [item["file"] for item in skipped] == [
        str(tmp_path / "gta" / f)
        for f in ("images/00002.png", "labels/00003.png", "labels/00004.png")
    ]
    reasons = [item["reason"] for item in skipped]
    assert len(reasons) == 3
    assert "images/00002.png: image without a label" in reasons[0]
    assert "labels/00003.png: label without an image" in reasons[1]
    assert "labels/00004.png: label values 99 are outside the gta5 mapping" in reasons[2]


def test_empty_split_stops_even_in_skip_mode(tmp_path):
    datasets = _real(tmp_path)
    for path in (tmp_path / "gta" / "images").iterdir():
        path.write_bytes(b"")
    with pytest.raises(
        DataError,
        match="gta: split 'source_train' is empty; expected at least one gta5 image/label pair",
    ):
        ingest(_settings(tmp_path, skip_bad_files=True), datasets)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "labels").mkdir()
    datasets = IngestionDatasets(
        DatasetSpec("gta5", str(tmp_path / "empty")), datasets.target_train, datasets.target_val
    )
    with pytest.raises(DataError, match="empty: split 'source_train' is empty"):
        ingest(_settings(tmp_path), datasets)


def _embedded_without_target_train(tmp_path: Path) -> IngestionSettings:
    embedded = EmbeddedSettings(
        root=str(tmp_path / "embedded"), height=32, width=64, sizes=SplitSizes(2, 0, 1)
    )
    return IngestionSettings(cache_dir=str(tmp_path / "cache"), workers=1, embedded=embedded)


def test_an_embedded_split_without_images_stops_before_drawing(tmp_path):
    datasets = IngestionDatasets(
        DatasetSpec("embedded"), DatasetSpec("embedded"), DatasetSpec("embedded")
    )
    with pytest.raises(
        DataError,
        match=r"^parameter ingestion\.embedded\.sizes\.target_train: ingestion_datasets\."
        r"target_train reads the embedded target_train images, so expected >= 1, got 0",
    ):
        ingest(_embedded_without_target_train(tmp_path), datasets)
    assert not (tmp_path / "embedded").exists() and not any(tmp_path.glob(".*"))


def test_no_target_train_images_for_source_only_training(tmp_path):
    datasets = IngestionDatasets(DatasetSpec("embedded"), None, DatasetSpec("embedded"))
    result = ingest(_embedded_without_target_train(tmp_path), datasets)
    assert len(result.manifests["source_train"]) == 2
    assert len(result.manifests["target_train"]) == 0
    assert len(result.manifests["target_val"]) == 1


@pytest.mark.parametrize("split", ["source_train", "target_val"])
def test_every_run_needs_source_train_and_target_val_images(split):
    sizes = {"source_train": 2, "target_train": 2, "target_val": 1, split: 0}
    with pytest.raises(ConfigError, match=rf"^sizes\.{split}: expected >= 1 image"):
        EmbeddedSettings(sizes=SplitSizes(**sizes))


def test_target_train_without_labels(tmp_path):
    cs = cityscapes_tree(tmp_path / "cs", "train", CS_IDS)
    datasets = _real(tmp_path)
    datasets = IngestionDatasets(
        datasets.source_train,
        DatasetSpec("cityscapes", str(cs), subset="train", labels=False),
        datasets.target_val,
    )
    result = ingest(_settings(tmp_path), datasets)
    assert result.manifests["target_train"]["label_path"].isna().all()
    assert len(result.class_pixel_counts["target_train"]) == 0


def test_class_frequencies():
    counts = pd.DataFrame(np.zeros((2, 19), dtype=np.int64), columns=list(CITYSCAPES_CLASSES))
    counts.loc[0, "road"], counts.loc[1, "road"], counts.loc[1, "pole"] = 6, 2, 2
    table = class_frequencies(counts)
    assert table.loc[0, "frequency"] == 0.8 and table.loc[5, "frequency"] == 0.2
    assert (
        table.loc[0, "images"] == 2 and table.loc[5, "images"] == 1 and table.loc[9, "pixels"] == 0
    )
