"""Bad inputs of every kind, each fed to a `kedro run` of a tiny trained project.

Each must stop the run with one message that names the input and what was expected,
raised by our own check (not from deep inside torch or Pillow), and leave every file the
project had written before as it was. Most runs are in-process ``KedroSession`` runs (what
``kedro run`` calls; a second each); ``test_kedro_cli_*`` repeat a bad data file and a bad
checkpoint in a real ``kedro run`` process for its exit status and printed message (a bad
parameter: tests/reliability/test_second_round_faults.py). Unit-level checks of the
same readers and validators live in tests/data, tests/test_params.py and
tests/hrda/test_checkpoint.py; the table in docs/reliability.md lists them all.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io.core import DatasetError
from PIL import Image

from hrda_kedro.data import DataError
from hrda_kedro.data.torch_datasets import ManifestDataset
from hrda_kedro.hrda.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.networks.weights import WeightsError
from hrda_kedro.params import ParameterError, parse
from hrda_kedro.pipelines.evaluation.nodes import evaluate_model
from hrda_kedro.runtime.models import build_model, model_params_dict
from tests.data.helpers import truncate, write_index, write_png16, write_rgb
from tests.reliability.helpers import (
    REPO,
    assert_refused,
    assert_unchanged,
    flat,
    latest_version,
    run_in_process,
    snapshot,
)
from tests.reliability.inputs import (
    USER_DATA,
    BadInput,
    Params,
    at_run,
    good_photo,
    gta,
    gta_image,
    raised_by_us,
    user_folder,
)

# --------------------------------------------------------------------------- makers


def _label(root: Path) -> Path:
    return root / "labels" / "00002.png"


def _truncated_png(root: Path) -> None:
    write_rgb(gta_image(root), 64, 64)
    write_index(_label(root), np.full((64, 64), 7))
    truncate(gta_image(root))


def _emptied(root: Path) -> None:
    for folder in ("images", "labels"):
        for path in (root / folder).iterdir():
            path.unlink()


def _photos(write: Callable[[Path], object]) -> Callable[[Path], Params]:
    """The user's own photos (a ``folder`` data set of JPEGs), the second written by ``write``."""
    return lambda project: user_folder(project, {"a.jpg": good_photo, "b.jpg": write})


def _source_only(project: Path) -> Path:
    return latest_version(project / "data" / "06_models" / "source_only" / "model.pt")


def _rewrite_checkpoint(project: Path, **network: Any) -> Params:
    """The source-only checkpoint replaced by a valid one of another network."""
    checkpoint = load_checkpoint(_source_only(project))
    checkpoint.pop("format")
    model = parse(ModelConfig, checkpoint["model_params"], "model")
    model.network = dataclasses.replace(model.network, **network)
    checkpoint.update(
        model=build_model(model).state_dict(), teacher=None, model_params=model_params_dict(model)
    )
    save_checkpoint(_source_only(project), checkpoint)
    return {}


def _lying_checkpoint(project: Path) -> Params:
    """Weights of the 19-class model under parameters that claim 10 classes."""
    checkpoint = load_checkpoint(_source_only(project))
    checkpoint.pop("format")
    checkpoint["model_params"]["network"]["num_classes"] = 10
    save_checkpoint(_source_only(project), checkpoint)
    return {}


def _write(path_of: Callable[[Path], Path], content: Callable[[Path], object]) -> Callable:
    def make(project: Path) -> Params:
        content(path_of(project))
        return {}

    return make


def _half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _in_progress(project: Path) -> Path:
    path = project / "data" / "06_models" / "in_progress" / "warmup" / "state.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _pretrained(content: bytes) -> Callable[[Path], Params]:
    def make(project: Path) -> Params:
        path = project / USER_DATA / "mit_b0.pth"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        return {"model": {"network": {"pretrained": str(path)}}}

    return make


# --------------------------------------------------------------------------- cases

CASES = [
    # parameters: stopped by the validation hook before any node runs
    BadInput("wrong type", "parameters", "warmup", at_run({"warmup": {"iterations": "many"}}),
             ParameterError, r"parameter warmup\.iterations: expected an integer, got 'many'"),
    BadInput("detail crop larger than context crop", "parameters", "warmup",
             at_run({"model": {"hrda": {"detail_crop": [128, 128]}}}), ParameterError,
             r"parameter model\.hrda\.detail_crop: the detail crop \[128, 128\] must fit inside "
             r"the context crop \[64, 64\]"),
    BadInput("crop not divisible by s*o", "parameters", "warmup",
             at_run({"model": {"hrda": {"context_crop": [60, 64]}}}), ParameterError,
             r"parameter model\.hrda\.context_crop: expected multiples of scale x output stride "
             r"= 8, got \[60, 64\]"),
    BadInput("zero iterations", "parameters", "self_training",
             at_run({"self_training": {"iterations": 0}}), ParameterError,
             r"parameter self_training\.iterations: expected >= 1, got 0"),
    BadInput("negative iterations", "parameters", "warmup",
             at_run({"warmup": {"iterations": -5}}), ParameterError,
             r"parameter warmup\.iterations: expected >= 0, got -5"),
    BadInput("unknown network name", "parameters", "warmup",
             at_run({"model": {"network": {"encoder": "vit-b16"}}}), ParameterError,
             r"parameter model\.network\.encoder: expected one of 'mit-nano' .* got 'vit-b16'"),
    BadInput("misspelt key", "parameters", "warmup", at_run({"warmup": {"iteratons": 5}}),
             ParameterError,
             r"parameter warmup\.iteratons: unknown key \(did you mean 'iterations'\?\)"),
    BadInput("unknown data set kind", "parameters", "ingestion",
             at_run({"ingestion_datasets": {"source_train": {"kind": "gta6"}}}), ParameterError,
             r"parameter ingestion_datasets\.source_train\.kind: expected one of 'embedded' .* "
             r"got 'gta6'"),
    BadInput("GPU asked for, none present", "parameters", "warmup",
             at_run({"runtime": {"device": "cuda"}}), ValueError,
             r"parameter runtime\.device: 'cuda' asked for, but CUDA is not available"),
    # At run start: the first training node, after ingestion, once found it.
    BadInput("pretrained weights path missing", "parameters", "warmup",
             at_run({"model": {"network": {"pretrained": "/nowhere/mit_b0.pth"}}}),
             ParameterError,
             r"^parameter model\.network\.pretrained: pretrained weights path "
             r"'/nowhere/mit_b0\.pth' does not exist; expected a local weights file"),
    BadInput("DeepLabV2 weights missing", "parameters", "warmup",
             at_run({"model": {"network": {"encoder": "resnet101", "architecture": "deeplabv2",
                                           "pretrained": "/nowhere/r101.pth"}}}),
             ParameterError,
             r"^parameter model\.network\.pretrained: pretrained ResNet-101 weights file "
             r"/nowhere/r101\.pth does not exist; expected a local \.pth state dict"),
    BadInput("feature-distance weights missing", "parameters", "self_training",
             at_run({"self_training": {"feature_distance": {"enabled": True,
                                                            "pretrained": "/nowhere/fd.pth"}}}),
             ParameterError,
             r"^parameter self_training\.feature_distance\.pretrained: pretrained weights path "
             r"'/nowhere/fd\.pth' does not exist"),
    BadInput("pretrained weights file is text", "parameters", "warmup",
             _pretrained(b"not weights"), WeightsError,
             r"weights file .*mit_b0\.pth cannot be read as a state dict with weights_only=True "
             r"\(\w+Error: .*\); expected a \.pth/\.bin state dict"),
    # data: stopped by ingestion, which stages its outputs and commits none of them
    BadInput("truncated PNG", "data", "ingestion", lambda p: gta(p, _truncated_png), DataError,
             r"images/00002\.png: cannot decode, truncated or corrupt .*; expected a readable "
             r"image \(PNG or JPEG\)"),
    BadInput("0-byte image", "data", "ingestion",
             lambda p: gta(p, lambda r: gta_image(r).write_bytes(b"")), DataError,
             r"images/00002\.png: empty file \(0 bytes\); expected a readable image \(PNG or JPEG\)"),
    BadInput("label of another size", "data", "ingestion",
             lambda p: gta(p, lambda r: write_index(_label(r), np.full((5, 10), 7))), DataError,
             r"labels/00002\.png: label is 10x5 \(WxH\) but its image .*images/00002\.png is "
             r"10x6; expected a label of the same size as its image"),
    BadInput("unknown label ids", "data", "ingestion",
             lambda p: gta(p, lambda r: write_index(_label(r), np.full((6, 10), 250))), DataError,
             r"labels/00002\.png: label values 250 are outside the gta5 mapping; expected "
             r"Cityscapes label ids 0-33"),
    BadInput("colour label", "data", "ingestion",
             lambda p: gta(p, lambda r: Image.new("RGB", (10, 6)).save(_label(r))), DataError,
             r"labels/00002\.png: label mode is RGB; expected an 8-bit single-channel PNG label"),
    BadInput("image without a label", "data", "ingestion",
             lambda p: gta(p, lambda r: _label(r).unlink()), DataError,
             r"images/00002\.png: image without a label; expected .*labels/00002\.png"),
    BadInput("label without an image", "data", "ingestion",
             lambda p: gta(p, lambda r: gta_image(r).unlink()), DataError,
             r"labels/00002\.png: label without an image; expected an image .*images/00002\.png"),
    BadInput("empty folders", "data", "ingestion", lambda p: gta(p, _emptied), DataError,
             r"user data ü: split 'source_train' is empty; expected at least one gta5 "
             r"image/label pair"),
    BadInput("missing folder", "data", "ingestion",
             lambda p: gta(p, lambda r: (_emptied(r), (r / "labels").rmdir())), DataError,
             r"user data ü/labels: folder not found; expected the gta5 labels"),
    # the user's own photos (kind: folder)
    BadInput("corrupt JPEG", "user image", "ingestion",
             _photos(lambda f: f.write_bytes(b"\xff\xd8\xff\xe0 not really")),
             DataError, r"photos/b\.jpg: not a readable image .*; expected a readable image \(PNG or JPEG\)"),
    BadInput("checkpoint of another class count", "checkpoint", "self_training",
             lambda p: _rewrite_checkpoint(p, num_classes=10), CheckpointError,
             r"input model \(source_only\): checkpoint has model\.network\.num_classes=10, "
             r"the parameters ask for 19"),
    BadInput("checkpoint of another architecture", "checkpoint", "self_training",
             lambda p: _rewrite_checkpoint(p, encoder="mit-b0"), CheckpointError,
             r"input model \(source_only\): checkpoint has model\.network\.encoder='mit-b0', "
             r"the parameters ask for 'mit-nano'"),
    BadInput("checkpoint whose parameters lie about its weights", "checkpoint",
             "self_training", _lying_checkpoint, CheckpointError,
             r"input model \(source_only\): weights do not fit the configured model \(another "
             r"architecture or class count\?\): shape mismatch"),
    BadInput("text file as checkpoint", "checkpoint", "self_training",
             _write(_source_only, lambda f: f.write_text("hello")), DatasetError,
             r"source_only_model: .*model\.pt: not a readable PyTorch checkpoint, truncated or "
             r"of another format .*; expected a checkpoint written by hrda-kedro"),
    BadInput("truncated checkpoint", "checkpoint", "self_training",
             _write(_source_only, _half), DatasetError,
             r"source_only_model: .*model\.pt: not a readable PyTorch checkpoint, truncated or "
             r"of another format"),
    BadInput("plain torch.save file", "checkpoint", "self_training",
             _write(_source_only, lambda f: torch.save({"state_dict": {}}, f)), DatasetError,
             r"source_only_model: .*model\.pt: not an hrda-kedro checkpoint \(expected a dict "
             r"with format='hrda-kedro/1'\)"),
    BadInput("checkpoint without weights", "checkpoint", "self_training",
             _write(_source_only, lambda f: save_checkpoint(f, {"stage": "source_only"})),
             CheckpointError,
             r"input model \(source_only\): not a trained-model checkpoint "
             r"\(no model_params/model\)"),
    BadInput("garbage in-training checkpoint", "checkpoint", "warmup",
             _write(_in_progress, lambda f: f.write_bytes(b"garbage")), CheckpointError,
             r"in_progress/warmup/state\.pt: refused to load: .*; expected a checkpoint "
             r"written by hrda-kedro"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_stops_the_run_with_one_message(case: BadInput, trained: Path) -> None:
    if case.name.startswith("GPU") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    params = case.make(trained)
    before = snapshot(trained / "data")
    with pytest.raises(case.error) as info:
        run_in_process(trained, case.pipeline, params)
    message = flat(str(info.value))
    assert re.search(case.message, message), message
    assert "weights_only` set to `False`" not in message  # torch's advice to run the file
    assert raised_by_us(info.value), "not our own check"
    assert_unchanged(before, trained / "data")


def test_paths_with_spaces_and_non_ascii_are_accepted(trained: Path) -> None:
    params = gta(trained, lambda root: None)
    run_in_process(trained, "ingestion", params)
    manifest = pd.read_csv(trained / "data" / "05_model_input" / "source_train_manifest.csv")
    assert all(USER_DATA in path for path in manifest["image_path"])
    assert ManifestDataset(manifest)[0]["image"].shape == (3, 6, 10)


def test_images_of_every_mode_are_ingested_converted_and_trained(trained: Path, caplog) -> None:
    """Ingestion refused grayscale, RGBA, 16-bit, palette and CMYK images, which OpenCV's
    ``imread`` (the official loader) and ``predict`` read; now they train, converted."""
    rgba = np.random.default_rng(0).integers(0, 256, (6, 10, 4), dtype=np.uint8)
    params = user_folder(trained, {
        "rgb.png": good_photo,
        "gray.png": lambda f: Image.fromarray(rgba[..., 0]).save(f),
        "rgba.png": lambda f: Image.fromarray(rgba, "RGBA").save(f),
        "deep.png": lambda f: write_png16(f, rgba[..., :3].astype(np.uint16) * 257),
        "palette.png": lambda f: write_index(f, rgba[..., 0], mode="P"),
        "print.jpg": lambda f: Image.fromarray(rgba, "RGBA").convert("CMYK").save(f),
    })  # fmt: skip
    resize = {"width": 128, "height": 64, "keep_ratio": False}  # to fit the 64x64 crops
    params["ingestion_datasets"]["source_train"]["resize"] = resize
    caplog.set_level("INFO")
    run_in_process(trained, "ingestion", params)
    report = json.loads((trained / "data" / "08_reporting" / "ingestion_report.json").read_text())
    assert report["splits"]["source_train"]["converted_to_rgb"] == {
        "16-bit RGB": 1, "CMYK": 1, "RGBA": 1, "grayscale (L)": 1, "palette (P)": 1,
    }  # fmt: skip
    assert "source_train: 5 of 6 images are not 8-bit RGB (16-bit RGB: 1, CMYK: 1" in caplog.text
    manifest = pd.read_csv(trained / "data" / "05_model_input" / "source_train_manifest.csv")
    row = int(manifest.index[manifest["name"] == "deep"][0])
    deep = ManifestDataset(manifest, resize=False)[row]
    np.testing.assert_array_equal(deep["image"].permute(1, 2, 0).numpy(), rgba[..., :3])
    models = trained / "data" / "06_models" / "source_only" / "model.pt"
    before = latest_version(models)
    run_in_process(trained, "warmup", {**params, "warmup": {"iterations": 4}})
    assert latest_version(models) != before


@pytest.mark.parametrize("damage", ["image deleted", "label emptied"])
def test_training_file_changed_after_ingestion_is_named(trained: Path, damage: str) -> None:
    run_in_process(trained, "ingestion")  # manifests of the copy's own files
    manifest = pd.read_csv(trained / "data" / "05_model_input" / "source_train_manifest.csv")
    if damage == "image deleted":
        path = Path(manifest["image_path"][0])
        path.unlink()
    else:
        path = Path(manifest["label_path"][0])
        path.write_bytes(b"")
    before = snapshot(trained / "data")
    with pytest.raises(DataError) as info:
        run_in_process(trained, "warmup", {"warmup": {"iterations": 8}})
    assert flat(str(info.value)).startswith(f"{path}: cannot read this ")
    assert "expected the file the ingestion pipeline checked" in str(info.value)
    assert_unchanged(before, trained / "data")


def test_evaluating_a_checkpoint_of_another_class_count(trained: Path) -> None:
    """Evaluation rebuilds any network from its checkpoint but scores it against 19-class
    labels, so it must refuse this one before inference. The node is called directly: an
    ``evaluation`` run reaches the same check, seconds later, after other models."""
    _rewrite_checkpoint(trained, num_classes=10)
    checkpoint = load_checkpoint(_source_only(trained))
    loader = OmegaConfigLoader(str(trained / "conf"), base_env="base", default_run_env="local")
    params = loader["parameters"]
    with pytest.raises(CheckpointError, match=r"source_only: checkpoint has model\.network\."
                       r"num_classes=10, the parameters ask for 19"):  # fmt: skip
        evaluate_model(
            checkpoint,
            pd.read_csv(trained / "data" / "05_model_input" / "target_val_manifest.csv"),
            params["model"],
            params["evaluation"],
            params["runtime"],
        )


# --------------------------------------------------------------------------- real processes


def test_kedro_cli_bad_data_file(trained: Path) -> None:
    params = gta(trained, _truncated_png)
    env = trained / "conf" / "bad_data"
    env.mkdir()
    datasets = {
        "source_train": params["ingestion_datasets"]["source_train"],
        "target_train": {"kind": "embedded"},
        "target_val": {"kind": "embedded"},
    }
    (env / "parameters.yml").write_text(yaml.safe_dump({"ingestion_datasets": datasets}))
    assert_refused(
        trained,
        "--env bad_data",
        r"DataError: .*user data ü/images/00002\.png: cannot decode, truncated or corrupt",
    )


def test_kedro_cli_bad_checkpoint(trained: Path) -> None:
    _source_only(trained).write_text("hello")
    assert_refused(
        trained,
        "--pipeline self_training",
        r"CheckpointError: source_only_model: \S+/model\.pt: not a readable PyTorch checkpoint",
    )


def test_shipped_ablation_study_does_not_shadow_a_bad_model_parameter(trained: Path) -> None:
    shutil.copy(REPO / "conf" / "base" / "parameters_ablations.yml", trained / "conf" / "base")
    with pytest.raises(ParameterError, match=r"^parameter model\.hrda\.detail_crop: "):
        run_in_process(trained, "warmup", {"model": {"hrda": {"detail_crop": [128, 128]}}})
