"""Pseudo-label materialization: every image predicted once, in parallel streams on a CPU,
with the files a one-thread loop writes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kedro_datasets.partitions import PartitionedDataset
from PIL import Image

from hrda_kedro.pipelines.self_training import nodes
from tests.pipelines.evaluation.fabricate import (
    MODEL,
    RUN_MODEL,
    RUN_WINDOWS,
    checkpoint,
    val_manifest,
)

# "a" is a prefix of "a_d": sorted, a_d's two files fall between a's, so a's prediction
# must wait for its second file while a_d's is made.
NAMES = ["b", "a_d", "a", "c"]
PREDICT = nodes.predict_full_image


def target_train(root: Path) -> pd.DataFrame:
    manifest = val_manifest(root, count=len(NAMES))
    for row, name in zip(manifest.itertuples(), NAMES, strict=True):
        renamed = root / f"{name}.png"
        Path(row.image_path).rename(renamed)
        manifest.loc[row.Index, ["name", "image_path"]] = [name, str(renamed)]
    return manifest.assign(label_path="", original_label_path="", split="target_train")


def materialized(root: Path, streams: int, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, list]:
    """The saved files (name -> array) and the images the teacher predicted, in order."""
    predicted: list[Any] = []
    lock = threading.Lock()

    def counted(model, images, windows):  # noqa: ANN001, ANN202 - a spy on the real function
        with lock:
            predicted.append(images.sum().item())
        return PREDICT(model, images, windows)

    monkeypatch.setattr(nodes, "predict_full_image", counted)
    partitions = nodes.materialize_pseudo_labels(
        checkpoint("round_0", 0),
        target_train(root / "images"),
        MODEL,
        {"device": "cpu", "predict_streams": streams},
    )
    store = PartitionedDataset(
        path=str(root / "pseudo_labels"),
        dataset="pillow.ImageDataset",
        filename_suffix=".png",
    )
    store.save(partitions)
    files = {path.stem: np.asarray(Image.open(path)) for path in (root / "pseudo_labels").iterdir()}
    return files, predicted


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_each_image_is_predicted_once_and_its_files_equal_a_one_thread_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None, streams: int
) -> None:
    files, predicted = materialized(tmp_path / "streams", streams, monkeypatch)
    expected, _ = materialized(tmp_path / "loop", 1, monkeypatch)
    assert sorted(files) == sorted(f"{n}{s}" for n in NAMES for s in ("_label", "_confidence"))
    assert len(predicted) == len(NAMES) and len(set(predicted)) == len(NAMES)
    for name, array in expected.items():
        assert np.array_equal(files[name], array), name


def test_a_file_saved_again_is_predicted_again_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """Kedro saves each partition once; a caller that asks twice still gets the file."""
    partitions = nodes.materialize_pseudo_labels(
        checkpoint("round_0", 0),
        target_train(tmp_path),
        MODEL,
        {"device": "cpu", "predict_streams": 2},
    )
    first = {key: np.asarray(partitions[key]()) for key in sorted(partitions)}
    again = np.asarray(partitions["a_label"]())
    assert np.array_equal(again, first["a_label"])


def test_the_teacher_predicts_with_the_runs_test_time_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As evaluation does (tests/pipelines/evaluation/test_nodes.py): the run's stride,
    batching, weights and memory bound; a null window is the checkpoint's context crop."""
    used = []

    def spy(model, images, windows):  # noqa: ANN001, ANN202
        used.append((model.hr_window_batch, windows))
        return PREDICT(model, images, windows)

    monkeypatch.setattr(nodes, "predict_full_image", spy)
    partitions = nodes.materialize_pseudo_labels(
        checkpoint("round_0", 0),
        target_train(tmp_path).iloc[:1],
        RUN_MODEL,
        {"device": "cpu", "predict_streams": 1},
    )
    for save in partitions.values():  # the files are predicted as they are saved
        save()
    assert used == [RUN_WINDOWS]


def test_images_of_one_file_name_in_two_folders_get_pseudo_labels_of_their_own(
    tmp_path: Path, one_thread: None
) -> None:
    """Cameras or sequences numbered from 0 each (cam1/0000, cam2/0000): the files are named
    by the images' pair names, which keep the folders, not by the file stems they share."""
    manifest = val_manifest(tmp_path, count=2)
    for row, camera in zip(manifest.itertuples(), ("cam1", "cam2"), strict=True):
        moved = tmp_path / camera / "0000.png"
        moved.parent.mkdir()
        Path(row.image_path).rename(moved)
        manifest.loc[row.Index, ["name", "image_path"]] = [f"{camera}/0000", str(moved)]
    manifest = manifest.assign(split="target_train")
    run = {"device": "cpu", "predict_streams": 1}
    model = checkpoint("round_0", 0)
    both = nodes.materialize_pseudo_labels(model, manifest, MODEL, run)
    assert sorted(both) == [
        f"{camera}/0000{suffix}"
        for camera in ("cam1", "cam2")
        for suffix in ("_confidence", "_label")
    ]
    for index in range(2):
        alone = nodes.materialize_pseudo_labels(model, manifest.iloc[[index]], MODEL, run)
        for key, save in alone.items():
            assert np.array_equal(np.asarray(both[key]()), np.asarray(save())), key
    report = nodes.assess_pseudo_labels(both, manifest, MODEL, {})
    assert report["images"] == 2 and "miou" in report
