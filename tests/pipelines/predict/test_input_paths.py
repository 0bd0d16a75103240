"""Near-misses in predict's two paths, the input folder and the checkpoint: each gets a
message that says what the path holds and what to give instead."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from hrda_kedro.data import DataError, MissingFolderError
from hrda_kedro.datasets.export_datasets import ExportedModelDataset
from hrda_kedro.datasets.image_folder import ImageFolderDataset
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.trainer import StageResult
from hrda_kedro.params import ParameterError, parse
from hrda_kedro.pipelines.export.nodes import export_model
from hrda_kedro.pipelines.predict.nodes import list_inputs, load_checkpoint_file
from hrda_kedro.runtime.models import build_model
from hrda_kedro.stages import checkpoint_payload
from tests.data.helpers import write_rgb

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = {
    "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
    "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
}


def listed(folder: Path, **predict: object) -> list[str]:
    images = ImageFolderDataset(path=str(folder)).load()
    return list(list_inputs(images, {"input_dir": str(folder), **predict})["partition_id"])


def test_a_file_as_input_folder_is_named_a_file(tmp_path: Path) -> None:
    write_rgb(tmp_path / "photo.png")
    with pytest.raises(MissingFolderError, match=r"photo.png: a file, not a folder; expected"):
        listed(tmp_path / "photo.png")


def test_a_folder_without_images_says_what_it_holds_and_where_the_folder_is_set(
    tmp_path: Path,
) -> None:
    """Not a bad file: the command line's advice must be a folder's, not skip_bad_files."""
    for name in ("a.webp", "b.tiff", "c.bmp", "d.gif"):
        (tmp_path / name).write_bytes(b"a photo")
    with pytest.raises(MissingFolderError) as info:
        listed(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no image to segment (.png, .jpg, .jpeg, any case, subfolders included); "
        "it holds 4 other files: a.webp, b.tiff, c.bmp, ...; expected the folder of your "
        'images, set by --params "predict.input_dir=..." or predict_input_dir in '
        "conf/<env>/globals.yml"
    )


def test_left_out_files_are_named_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_rgb(tmp_path / "IMG_1.png", 8, 8)
    (tmp_path / "._IMG_1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "IMG_2.webp").write_bytes(b"a photo")
    with caplog.at_level(logging.INFO, logger="hrda_kedro.pipelines.predict.nodes"):
        assert listed(tmp_path) == ["IMG_1"]
    assert "ignoring 1 hidden files and folders (names starting with '.'): ._IMG_1.png" in (
        caplog.text
    )
    assert "ignoring 1 files that are not images (.png, .jpg, .jpeg): IMG_2.webp" in caplog.text


def test_a_broken_link_stops_the_run_or_is_skipped(tmp_path: Path) -> None:
    write_rgb(tmp_path / "ok.png", 8, 8)
    (tmp_path / "broken.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"broken.png: a broken link"):
        listed(tmp_path)
    assert listed(tmp_path, skip_bad_files=True) == ["ok"]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """An export folder of an untrained tiny model, as kedro run --pipeline=export writes it."""
    params = parse(ModelConfig, MODEL, "model")
    torch.manual_seed(0)
    state = build_model(params).state_dict()
    checkpoint = checkpoint_payload(StageResult(model=state, teacher=None), params, "round_1")
    folder = tmp_path / "export"
    ExportedModelDataset(filepath=str(folder)).save(export_model(checkpoint, MODEL))
    return folder


def test_an_exports_config_json_loads_its_folder(export: Path) -> None:
    checkpoint, where = load_checkpoint_file(str(export / "config.json"))
    assert where == export and checkpoint["stage"] == "round_1"


def test_an_onnx_graph_points_to_the_export_folder(export: Path) -> None:
    (export / "window_predictor.onnx").write_bytes(b"an ONNX graph")
    with pytest.raises(ParameterError) as info:
        load_checkpoint_file(str(export / "window_predictor.onnx"))
    assert str(info.value) == (
        f"parameter predict.checkpoint: {export}/window_predictor.onnx: an ONNX graph, which "
        "predict does not run (it is for runtimes without PyTorch); expected the export "
        f"folder holding model.safetensors and config.json ({export}) or a checkpoint"
    )


@pytest.mark.parametrize("named", ["", "model.safetensors"])
def test_weights_without_their_config_are_an_incomplete_export(export: Path, named: str) -> None:
    (export / "config.json").unlink()
    with pytest.raises(ParameterError) as info:
        load_checkpoint_file(str(export / named))
    assert str(info.value) == (
        f"parameter predict.checkpoint: {export}: config.json is missing next to "
        "model.safetensors, an incomplete export; expected both files, made by "
        "kedro run --pipeline=export"
    )
