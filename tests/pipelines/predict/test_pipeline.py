"""The predict pipeline on a folder of awkward images, with a tiny trained-model checkpoint."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.io.core import Version
from kedro.runner import SequentialRunner
from PIL import Image

from hrda_kedro.data import DataError
from hrda_kedro.datasets.checkpoint_dataset import CheckpointDataset
from hrda_kedro.hrda.inference import predict_full_image_labels
from hrda_kedro.hrda.model_config import ModelConfig, SlidingWindows
from hrda_kedro.hrda.training.trainer import StageResult
from hrda_kedro.params import ParameterError, parse
from hrda_kedro.pipeline_registry import register_pipelines
from hrda_kedro.pipelines.predict import create_pipeline, nodes
from hrda_kedro.runtime.models import build_model
from hrda_kedro.stages import checkpoint_payload
from tests.conftest import torch_threads
from tests.data.helpers import truncate, write_index, write_png16, write_rgb

PROJECT = Path(__file__).resolve().parents[3]
MODEL = {
    "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
    "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
}
RUNTIME = {"device": "cpu", "progress_bar": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def save_checkpoint(folder: Path, mode: str = "hrda", stage: str = "round_1") -> Path:
    """A versioned checkpoint of an untrained tiny model, as the training stage ``stage``
    saves it (in the catalog's folder of that stage's model)."""
    params = parse(ModelConfig, {**MODEL, "hrda": {**MODEL["hrda"], "mode": mode}}, "model")
    result = StageResult(model=build_model(params).state_dict(), teacher=None)
    path = folder / "06_models" / stage / "model.pt"
    dataset = CheckpointDataset(filepath=str(path), version=Version(None, None))
    dataset.save(checkpoint_payload(result, params, stage))
    return path


def write_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Images of every mode and odd sizes; returns partition id -> (height, width)."""
    write_rgb(folder / "street 1.png", 40, 70)
    write_rgb(folder / "grüße.jpg", 33, 47, seed=1)
    write_rgb(folder / "grüße.png", 8, 8, seed=2)  # same stem: names keep their suffix
    write_rgb(folder / "tiny.png", 5, 7, seed=3)  # smaller than the 64x64 window
    write_rgb(folder / "sub" / "nested.png", 24, 40, seed=4)
    Image.fromarray(np.full((20, 30), 90, np.uint8)).save(folder / "gray.png")
    Image.fromarray(np.full((21, 31, 4), 200, np.uint8), "RGBA").save(folder / "alpha.png")
    write_index(folder / "palette.png", np.arange(30).reshape(5, 6), mode="P")
    write_png16(folder / "deep16.png", np.arange(36 * 18).reshape(18, 36) * 100)
    (folder / "notes.txt").write_text("not an image: ignored")
    return {
        "street 1": (40, 70), "grüße.jpg": (33, 47), "grüße.png": (8, 8), "tiny": (5, 7),
        "sub/nested": (24, 40), "gray": (20, 30), "alpha": (21, 31), "palette": (5, 6),
        "deep16": (18, 36),
    }  # fmt: skip


def project_catalog(predict: dict) -> dict:
    """The shipped catalog's entries, ``predict.input_dir`` given as on the command line."""
    runtime_params = {"predict": {"input_dir": predict["input_dir"]}}
    return OmegaConfigLoader(
        str(PROJECT / "conf"),
        base_env="base",
        default_run_env="local",
        runtime_params=runtime_params,
    )["catalog"]


def make_catalog(predict: dict) -> DataCatalog:
    """The shipped catalog, with the run's parameters."""
    catalog = DataCatalog.from_config(project_catalog(predict))
    catalog["params:predict"] = predict
    catalog["params:model"] = MODEL
    catalog["params:runtime"] = RUNTIME
    return catalog


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the catalog's relative data/ paths land here
    return tmp_path


def output(project: Path, kind: str, pid: str) -> Image.Image:
    return Image.open(project / "data" / "07_model_output" / "predict" / kind / f"{pid}.png")


def test_segments_images_of_any_mode_and_size(project: Path) -> None:
    checkpoint = save_checkpoint(project / "models")
    sizes = write_inputs(project / "inputs")
    predict = {
        "input_dir": str(project / "inputs"),
        "checkpoint": str(checkpoint),
        "attention": True,
    }
    catalog = make_catalog(predict)
    SequentialRunner().run(create_pipeline(), catalog)
    manifest = catalog.load("predict_manifest")
    assert sorted(manifest["partition_id"]) == sorted(sizes)
    for pid, (height, width) in sizes.items():
        label = output(project, "labels", pid)
        assert label.mode == "L" and label.size == (width, height)
        assert np.asarray(label).max() < 19
        overlay = output(project, "overlays", pid)
        assert overlay.mode == "RGB" and overlay.size == (width, height)
        attention = output(project, "attention", pid)
        assert attention.mode == "L" and attention.size == (width, height)


def test_a_model_without_attention_writes_no_maps_and_a_rerun_replaces_the_outputs(
    project: Path,
) -> None:
    checkpoint = save_checkpoint(project / "models", mode="lr_only")
    write_rgb(project / "inputs" / "a.png", 16, 24)
    predict = {"input_dir": "inputs", "checkpoint": str(checkpoint), "attention": True}
    stale = project / "data" / "07_model_output" / "predict" / "attention" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    SequentialRunner().run(create_pipeline(), make_catalog(predict))
    assert output(project, "labels", "a").size == (24, 16)
    assert not stale.exists()


def _predicted(project: Path) -> dict[str, np.ndarray]:
    """Every label and attention map the run wrote, by kind and partition id."""
    folder = project / "data" / "07_model_output" / "predict"
    return {
        path.relative_to(folder).as_posix(): np.asarray(Image.open(path))
        for kind in ("labels", "attention")
        for path in sorted((folder / kind).rglob("*.png"))
    }


def _run_counting_threads(
    project: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: Path, streams: int
) -> tuple[dict[str, np.ndarray], Counter[str]]:
    """The outputs of one predict run, and how many images each thread predicted."""
    calls: Counter[str] = Counter()

    def counting(*args, **kwargs):
        calls[threading.current_thread().name.split("_")[0]] += 1
        return predict_full_image_labels(*args, **kwargs)

    monkeypatch.setattr(nodes, "predict_full_image_labels", counting)
    catalog = make_catalog(
        {"input_dir": "inputs", "checkpoint": str(checkpoint), "attention": True}
    )
    catalog["params:runtime"] = {**RUNTIME, "predict_streams": streams}
    SequentialRunner().run(create_pipeline(), catalog)
    return _predicted(project), calls


def test_images_predicted_in_streams_are_each_predicted_once_as_one_thread_would(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two streams on two threads: every image once, in the streams' threads, with the
    labels and maps of a one-image loop on one thread (names sort unlike the manifest)."""
    write_inputs(project / "inputs")
    write_rgb(project / "inputs" / "street 1_b.png", 30, 20, seed=5)  # sorts after its prefix
    checkpoint = save_checkpoint(project / "models")
    loop, loop_calls = _run_counting_threads(project, monkeypatch, checkpoint, streams=1)
    with torch_threads(2):
        streamed, stream_calls = _run_counting_threads(project, monkeypatch, checkpoint, 2)
    assert loop_calls == {"MainThread": 10}
    assert stream_calls == {"hrda-image": 10}
    assert loop.keys() == streamed.keys() and len(loop) == 20
    for name, labels in loop.items():
        np.testing.assert_array_equal(streamed[name], labels, err_msg=name)


@pytest.mark.parametrize(
    ("predict_keys", "batch", "weights"),
    [({}, 2, "tapered"), ({"window_batch": 3, "window_weights": "uniform"}, 3, "uniform")],
)
def test_the_runs_test_time_windows_apply_to_any_checkpoint(
    project: Path, monkeypatch: pytest.MonkeyPatch, predict_keys: dict, batch: int, weights: str
) -> None:
    """``model.inference`` of the run, as evaluation and export use it (predict once used the
    checkpoint's and ignored the run's stride, weights and memory bound); a window left at
    null is the checkpoint's context crop; ``predict``'s own keys win where set."""
    write_rgb(project / "inputs" / "a.png", 40, 70)
    checkpoint = save_checkpoint(project / "models")  # trained with uniform, window_batch 4
    used = []

    def spy(net, images, windows, **kwargs):
        used.append((net.hr_window_batch, windows))
        return predict_full_image_labels(net, images, windows, **kwargs)

    monkeypatch.setattr(nodes, "predict_full_image_labels", spy)
    catalog = make_catalog({"input_dir": "inputs", "checkpoint": str(checkpoint), **predict_keys})
    catalog["params:model"] = {
        **MODEL,
        "hrda": {"context_crop": [128, 128], "detail_crop": [64, 64]},  # not the checkpoint's
        "inference": {
            "stride": [16, 16],
            "window_batch": 2,
            "hr_window_batch": 5,
            "window_weights": "tapered",
        },
    }
    SequentialRunner().run(create_pipeline(), catalog)
    assert used == [(5, SlidingWindows((64, 64), (16, 16), batch, weights))]


@pytest.mark.parametrize(
    ("largest_streamed", "thread"), [(40 * 70, "hrda-image"), (40 * 70 - 1, "MainThread")]
)
def test_a_folder_with_a_larger_image_is_predicted_one_image_at_a_time(
    project: Path, monkeypatch: pytest.MonkeyPatch, largest_streamed: int, thread: str
) -> None:
    """Memory of a large photo stays one stream's, with progress within the image."""
    write_inputs(project / "inputs")  # the largest image is 40 x 70
    monkeypatch.setattr(nodes, "STREAMED_PIXELS_MAX", largest_streamed)
    with torch_threads(2):
        checkpoint = save_checkpoint(project / "models")
        _, calls = _run_counting_threads(project, monkeypatch, checkpoint, streams=2)
    assert calls == {thread: 9}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "inputs: folder not found; expected a folder of images"),
        (lambda d: d.mkdir(), "inputs: no image to segment .* it is empty"),
        (lambda d: (d.mkdir(), (d / "a.txt").write_text("x")), "it holds 1 other files"),
        (lambda d: (write_rgb(d / "ok.png"), (d / "bad photo.png").write_bytes(b"")),
         "bad photo.png: empty file \\(0 bytes\\)"),
        (lambda d: (write_rgb(d / "ok.jpg", 64, 64), truncate(d / "ok.jpg")),
         "ok.jpg: cannot decode, truncated or corrupt"),
    ],
)  # fmt: skip
def test_bad_inputs_stop_the_run_naming_the_file_before_any_output(
    project: Path, make, message: str
) -> None:
    make(project / "inputs")
    predict = {"input_dir": "inputs", "checkpoint": str(save_checkpoint(project / "models"))}
    with pytest.raises(DataError, match=message):
        SequentialRunner().run(create_pipeline(), make_catalog(predict))
    assert not (project / "data" / "07_model_output").exists()


def test_labels_of_another_listing_are_named_not_a_broadcast_error(tmp_path: Path) -> None:
    """A redraw (``--nodes=draw_overlays``) over labels of another run's images failed with
    a numpy broadcast error; each label is checked against its image as it is drawn (one
    decode each)."""
    image = tmp_path / "a.png"
    write_rgb(image, 40, 60)
    manifest = pd.DataFrame(
        {"partition_id": ["a"], "image_path": [str(image)], "height": [40], "width": [60]}
    )
    overlays = nodes.draw_overlays(manifest, {"a": lambda: Image.new("L", (30, 80))}, {})
    with pytest.raises(DataError, match=r"saved label 'a' is 30x80 .*a.png is 60x40"):
        overlays["a"]()
    right = nodes.draw_overlays(manifest, {"a": lambda: Image.new("L", (60, 40))}, {})
    assert right["a"]().size == (60, 40)


def test_bad_files_can_be_skipped(project: Path) -> None:
    write_rgb(project / "inputs" / "ok.png", 16, 16)
    (project / "inputs" / "empty.png").write_bytes(b"")
    predict = {
        "input_dir": "inputs",
        "checkpoint": str(save_checkpoint(project / "models")),
        "skip_bad_files": True,
    }
    catalog = make_catalog(predict)
    SequentialRunner().run(create_pipeline(), catalog)
    assert list(catalog.load("predict_manifest")["partition_id"]) == ["ok"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "model.pt: checkpoint not found"),
        (
            lambda p: p.mkdir(parents=True),
            r"model.pt: no saved version in this folder .*; expected",
        ),
    ],
)
def test_a_missing_checkpoint_is_named(project: Path, make, message: str) -> None:
    write_rgb(project / "inputs" / "a.png")
    path = project / "data" / "06_models" / "round_2" / "model.pt"
    make(path)
    catalog = make_catalog({"input_dir": "inputs", "checkpoint": str(path)})
    with pytest.raises(ParameterError, match=f"parameter predict.checkpoint: .*{message}"):
        SequentialRunner().run(create_pipeline(), catalog)


def test_a_stage_folder_as_checkpoint_names_the_checkpoints_inside(project: Path) -> None:
    """``data/06_models/round_1`` is one level above the versioned ``model.pt`` folder."""
    write_rgb(project / "inputs" / "a.png")
    stage = save_checkpoint(project / "data").parent  # data/06_models/round_1
    catalog = make_catalog({"input_dir": "inputs", "checkpoint": str(stage)})
    with pytest.raises(ParameterError, match=rf"the checkpoints under it: {stage / 'model.pt'}$"):
        SequentialRunner().run(create_pipeline(), catalog)


def test_shipped_parameters_default_to_the_last_rounds_model() -> None:
    loader = OmegaConfigLoader(
        str(PROJECT / "conf"),
        base_env="base",
        default_run_env="local",
        runtime_params={"self_training": {"rounds": 3}},
    )
    predict = loader["parameters"]["predict"]
    assert predict["checkpoint"] is None  # the catalog's last-round model, below
    assert predict["input_dir"] == "data/01_raw/predict_inputs"


@pytest.mark.parametrize(
    ("rounds", "stage", "model"),
    [(1, "round_1", "round_1.model"), (0, "source_only", "source_only_model")],
)
def test_predict_reads_the_final_model_and_the_images_through_the_catalog(
    project: Path, rounds: int, stage: str, model: str
) -> None:
    """``--load-versions`` and kedro viz see both inputs; no path parameter is needed. With
    ``rounds: 0`` (source-only) the final model is the warmup's."""
    write_inputs(project / "inputs")
    save_checkpoint(project / "data", stage=stage)  # data/06_models/<stage>/model.pt/<version>/
    pipeline = register_pipelines({"self_training": {"rounds": rounds}})["predict"]
    assert {model, "predict_images"} <= pipeline.inputs()
    catalog = make_catalog({"input_dir": "inputs", "checkpoint": None})
    SequentialRunner().run(pipeline, catalog)
    assert len(list((project / "data/07_model_output/predict/labels").rglob("*.png"))) == 9


def _folders(conf: Path, runtime_params: dict | None = None) -> tuple[str, str]:
    """The folder ``predict_images`` reads and parameter ``predict.input_dir``."""
    loader = OmegaConfigLoader(
        str(conf), base_env="base", default_run_env="local", runtime_params=runtime_params
    )
    return loader["catalog"]["predict_images"]["path"], loader["parameters"]["predict"]["input_dir"]


def test_the_images_dataset_reads_the_folder_of_the_command_line_or_globals(
    tmp_path: Path,
) -> None:
    """One place sets the folder: ``--params predict.input_dir``, else ``predict_input_dir``
    of the environment's globals; the parameter mirrors what the catalog reads."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT / "conf" / "base", conf / "base")
    (conf / "local").mkdir()
    default = "data/01_raw/predict_inputs"
    assert _folders(conf) == (default, default)
    assert _folders(conf, {"predict": {"input_dir": "/my photos"}}) == ("/my photos",) * 2
    (conf / "local" / "globals.yml").write_text("predict_input_dir: /shared/photos\n")
    assert _folders(conf) == ("/shared/photos",) * 2
    assert _folders(conf, {"predict": {"input_dir": "mine"}}) == ("mine",) * 2
