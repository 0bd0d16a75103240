"""Second round of bad inputs: silent typos, late checks, escaping image errors, collisions.

Same rules as test_bad_inputs: each input, fed to a run of a tiny trained project, stops it
with one message that names the input and what was expected, raised by our own check
before any work, and leaves every file under ``data/`` as it was. Inputs that are meant to
be left out (``skip_bad_files``) are checked to be left out, named in the log or report.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, PngImagePlugin

from hrda_kedro.data import DataError
from hrda_kedro.hrda.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hrda_kedro.params import ParameterError
from tests.data.helpers import write_rgb
from tests.reliability.helpers import (
    assert_unchanged,
    copy_project,
    final_error,
    flat,
    kedro,
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
    in_local,
    raised_by_us,
    user_folder,
)

# --------------------------------------------------------------------------- bad files


def bomb_png(path: Path) -> None:
    """A PNG whose header claims 100000 x 100000 pixels: Pillow's DecompressionBombError."""
    buffer = io.BytesIO()
    Image.new("RGB", (10, 6)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def text_bomb_png(path: Path) -> None:
    """A 2 kB PNG whose compressed text chunk inflates past Pillow's 1 MB limit."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (2 * 1024 * 1024), zip=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 6)).save(path, pnginfo=info)


def broken_crc_png(path: Path) -> None:
    """A PNG with one flipped byte inside its compressed pixel data."""
    write_rgb(path, 6, 10)
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 10
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


NOT_UTF8 = os.fsdecode(b"b\xff.jpg")  # a Latin-1 file name from an old camera or archive
COLLIDING = {"a.jpg": good_photo, "a.png": good_photo, "c.png": good_photo}
UNNAMABLE = {"a.jpg": good_photo, NOT_UTF8: good_photo}


# --------------------------------------------------------------------------- cases

P, D = "parameters", "data"


def _file_as_folder(project: Path, work_dir: str) -> dict:
    (project / "notes.txt").write_text("not a folder")
    return {"runtime": {"work_dir": str(project / work_dir)}}


CASES = [
    # typos that vanished: unknown top-level groups
    BadInput("misspelt group in conf/local", P, "warmup", in_local({"warmpu": {"iterations": 2}}),
             ParameterError, r"^parameter warmpu: unknown parameter group \(did you mean "
             r"'warmup'\?\), set in conf/\*/parameters\*\.yml or --params; known groups: "),
    BadInput("misspelt group at run time", P, "warmup", at_run({"warmpu": {"iterations": 2}}),
             ParameterError, r"^parameter warmpu: unknown parameter group \(did you mean 'warmup'"),
    BadInput("misspelt evaluation group", P, "evaluation", at_run({"evaluatoin": {"max_images": 1}}),
             ParameterError, r"^parameter evaluatoin: unknown parameter group \(did you mean "
             r"'evaluation'\?\)"),
    BadInput("group with a dash", P, "self_training", in_local({"self-training": {"rounds": 1}}),
             ParameterError, r"^parameter self-training: unknown parameter group \(did you "
             r"mean 'self_training'\?\)"),
    BadInput("group nobody reads", P, "warmup", at_run({"foo": {"bar": 1}}), ParameterError,
             r"^parameter foo: unknown parameter group, set in .* known groups: runtime, model"),
    BadInput("misspelt key three levels down", P, "self_training",
             at_run({"self_training": {"pseudo_labels": {"treshold": 0.9}}}), ParameterError,
             r"^parameter self_training\.pseudo_labels\.treshold: unknown key \(did you mean "
             r"'threshold'\?\)"),
    BadInput("misspelt ingestion key", P, "ingestion",
             at_run({"ingestion": {"embedded": {"domain_shfit": 0.9}}}), ParameterError,
             r"^parameter ingestion\.embedded\.domain_shfit: unknown key \(did you mean "
             r"'domain_shift'\?\)"),
    BadInput("misspelt data set key", P, "ingestion",
             at_run({"ingestion_datasets": {"source_train": {"kindd": "gta5"}}}), ParameterError,
             r"^parameter ingestion_datasets\.source_train\.kindd: unknown key \(did you mean "
             r"'kind'\?\)"),
    BadInput("misspelt group in a new parameters file", P, "warmup",
             in_local({"modle": {"network": {"num_classes": 19}}}), ParameterError,
             r"^parameter modle: unknown parameter group \(did you mean 'model'\?\)"),
    # checks that came too late: class ids
    BadInput("fewer classes than the label ids", P, "warmup",
             at_run({"model": {"network": {"num_classes": 10}}}), ParameterError,
             r"^parameter model\.network\.num_classes: the embedded labels of "
             r"ingestion_datasets\.source_train hold trainIds up to 18, so expected at least 19 "
             r"classes, got 10"),
    BadInput("more classes than the class table", P, "warmup",
             at_run({"model": {"network": {"num_classes": 25}}}), ParameterError,
             r"^parameter model\.network\.num_classes: expected at most 19 \(the Cityscapes "
             r"class table"),
    BadInput("class count as text", P, "warmup",
             at_run({"model": {"network": {"num_classes": "19"}}}), ParameterError,
             r"^parameter model\.network\.num_classes: expected an integer, got '19'"),
    BadInput("small class out of range", P, "evaluation",
             at_run({"evaluation": {"small_classes": [5, 30]}}), ParameterError,
             r"^parameter evaluation\.small_classes: class ids \[30\] are outside 0\.\.18 "
             r"\(model\.network\.num_classes = 19\)"),
    BadInput("negative small class", P, "evaluation",
             at_run({"evaluation": {"small_classes": [-1]}}), ParameterError,
             r"^parameter evaluation\.small_classes: class ids \[-1\] are outside 0\.\.18"),
    BadInput("class subset out of range", P, "evaluation",
             at_run({"evaluation": {"class_subsets": {"few": [0, 19]}}}), ParameterError,
             r"^parameter evaluation\.class_subsets\.few: class ids \[19\] are outside 0\.\.18"),
    BadInput("no image to evaluate", P, "evaluation",
             at_run({"evaluation": {"max_images": 0}}), ParameterError,
             r"^parameter evaluation\.max_images: expected null \(all images\) or >= 1, got 0"),
    # crops, windows and margins
    BadInput("context crop below the encoder's minimum", P, "warmup",
             at_run({"model": {"hrda": {"context_crop": [16, 16], "detail_crop": [8, 8]}}}),
             ParameterError, r"^parameter model\.hrda\.context_crop: the encoder 'mit-nano' "
             r"needs inputs of at least 32 pixels a side; \[16, 16\] / scale 2 is smaller "
             r"\(expected at least 64 a side\)"),
    BadInput("detail crop below the encoder's minimum", P, "warmup",
             at_run({"model": {"hrda": {"detail_crop": [16, 16]}}}), ParameterError,
             r"^parameter model\.hrda\.detail_crop: the encoder 'mit-nano' needs inputs of at "
             r"least 32 pixels a side; \[16, 16\] is smaller"),
    BadInput("inference window below the encoder's minimum", P, "evaluation",
             at_run({"model": {"inference": {"window": [32, 32]}}}), ParameterError,
             r"^parameter model\.inference\.window: the encoder 'mit-nano' needs inputs of at "
             r"least 32 pixels a side; \[32, 32\] / scale 2 is smaller"),
    BadInput("inference stride larger than the window", P, "uda",
             at_run({"model": {"inference": {"stride": [128, 128]}}}), ParameterError,
             r"^parameter model\.inference\.stride: the stride \[128, 128\] must not exceed "
             r"the window \[64, 64\]"),
    BadInput("inference stride off the output grid", P, "uda",
             at_run({"model": {"inference": {"stride": [20, 20]}}}), ParameterError,
             r"^parameter model\.inference\.stride: expected multiples of scale x output "
             r"stride = 8, got \[20, 20\]"),
    # rare class sampling: found by the sampler after pseudo-labels (or a whole warmup)
    BadInput("min_pixels above every image", P, "self_training",
             at_run({"self_training": {"rare_class_sampling": {"min_pixels": 10**9}}}),
             ParameterError, r"^parameter self_training\.rare_class_sampling\.min_pixels: no "
             r"source image holds 1000000000 pixels of any class; expected at most \d+, the "
             r"most any image holds of one class"),
    # the in-training checkpoints' folder, first written after checkpoint_every iterations
    BadInput("work_dir is a file", P, "warmup",
             lambda p: _file_as_folder(p, "notes.txt"), ParameterError,
             r"^parameter runtime\.work_dir: \S+/notes\.txt is a file; expected a folder for "
             r"the in-training checkpoints"),
    BadInput("work_dir under a file", P, "self_training",
             lambda p: _file_as_folder(p, "notes.txt/checkpoints"), ParameterError,
             r"^parameter runtime\.work_dir: \S+/notes\.txt is a file"),
    BadInput("inference window smaller than the detail crop", P, "evaluation",
             at_run({"model": {"hrda": {"context_crop": [128, 128], "detail_crop": [96, 96]},
                                "inference": {"window": [64, 64]}}}), ParameterError,
             r"^parameter model\.inference\.window: the inference window \[64, 64\] must hold "
             r"the detail crop \[96, 96\]"),
    BadInput("context crop larger than the images", P, "warmup",
             at_run({"model": {"hrda": {"context_crop": [128, 128]}}}), ParameterError,
             r"^parameter model\.hrda\.context_crop: the context crop \[128, 128\] \(HxW\) does "
             r"not fit in the 64x128 images of ingestion_datasets\.source_train"),
    BadInput("crop given as text", P, "warmup",
             at_run({"model": {"hrda": {"context_crop": "64x64"}}}), ParameterError,
             r"^parameter model\.hrda\.context_crop: expected a list of 2 x an integer, got "
             r"'64x64'"),
    BadInput("scale 0", P, "warmup", at_run({"model": {"hrda": {"scale": 0}}}),
             ParameterError, r"^parameter model\.hrda\.scale: expected >= 1, got 0"),
    BadInput("self-training without target images", P, "self_training",
             at_run({"ingestion_datasets": {"target_train": None}}), ParameterError,
             r"^parameter ingestion_datasets\.target_train: self-training \(2 round\(s\)\) "
             r"needs target images, got null"),
    BadInput("margins that cover the images", P, "self_training",
             at_run({"self_training": {"pseudo_labels": {"margins": [40, 40, 0, 0]}}}),
             ParameterError, r"^parameter self_training\.pseudo_labels\.margins: the margins "
             r"\[40, 40, 0, 0\] \(top, bottom, left, right\) cover the whole 64x128 \(HxW\) "
             r"image of ingestion_datasets\.target_train"),
    BadInput("margins that cover the reference size", P, "self_training",
             at_run({"self_training": {"pseudo_labels": {
                 "margins": [10, 10, 60, 60], "margins_reference_size": [100, 100]}}}),
             ParameterError, r"^parameter self_training\.pseudo_labels\.margins: the margins "
             r"\[10, 10, 60, 60\] .* cover the whole 100x100 \(HxW\) image "
             r"\(margins_reference_size\)"),
    BadInput("margins reference size of 0", P, "self_training",
             at_run({"self_training": {"pseudo_labels": {"margins_reference_size": [0, 10]}}}),
             ParameterError, r"^parameter self_training\.pseudo_labels\.margins_reference_size: "
             r"expected two positive integers, got \[0, 10\]"),
    # other ranges, one per group
    BadInput("no device", P, "warmup", at_run({"runtime": {"devices": 0}}), ParameterError,
             r"^parameter runtime\.devices: expected >= 1, got 0"),
    BadInput("a GPU this machine lacks", P, "uda", at_run({"runtime": {"device": "cuda:99"}}),
             ParameterError, r"^parameter runtime\.device: 'cuda:99' asked for, but (CUDA is "
             r"not available|this machine has \d+ CUDA device)"),
    BadInput("one fixed GPU for several ranks", P, "uda",
             at_run({"runtime": {"device": "cuda:1", "devices": 2}}), ParameterError,
             r"^parameter runtime\.device: 'cuda:1' names one GPU, but runtime\.devices: 2 runs "
             r"one rank per GPU \(cuda:0, cuda:1, \.\.\.\); expected cuda or auto"),
    BadInput("rounds below zero, run by a pipeline that does not read them", P, "evaluation",
             at_run({"self_training": {"rounds": -1}}), ParameterError,
             r"^parameter self_training\.rounds: expected an integer >= 0 \(0: source-only\), "
             r"got -1"),
    BadInput("a group written as a value", P, "warmup", at_run({"warmup": 1000}),
             ParameterError, r"^parameter warmup: expected a mapping, got 1000"),
    BadInput("no embedded target images for self-training", P, "uda",
             at_run({"ingestion": {"embedded": {"sizes": {"target_train": 0}}}}), ParameterError,
             r"^parameter ingestion\.embedded\.sizes\.target_train: ingestion_datasets\."
             r"target_train reads the embedded target_train images, so expected >= 1, got 0"),
    BadInput("EMA that never moves", P, "self_training",
             at_run({"self_training": {"ema_alpha": 1.0}}), ParameterError,
             r"^parameter self_training\.ema_alpha: expected 0 <= alpha < 1, got 1\.0"),
    BadInput("learning rate 0", P, "warmup", at_run({"warmup": {"optimizer": {"lr": 0}}}),
             ParameterError, r"^parameter warmup\.optimizer\.lr: expected > 0, got 0"),
    BadInput("dropout above 1", P, "warmup", at_run({"model": {"network": {"dropout": 1.5}}}),
             ParameterError, r"^parameter model\.network\.dropout: expected 0 <= dropout < 1"),
    BadInput("batch of 0", P, "warmup", at_run({"warmup": {"source_batch_size": 0}}),
             ParameterError, r"^parameter warmup\.source_batch_size: expected >= 1, got 0"),
    BadInput("no self-training iteration", P, "self_training",
             at_run({"self_training": {"iterations": 0}}), ParameterError,
             r"^parameter self_training\.iterations: expected >= 1, got 0"),
    BadInput("confidence threshold above 1", P, "self_training",
             at_run({"self_training": {"pseudo_labels": {"threshold": 1.5}}}), ParameterError,
             r"^parameter self_training\.pseudo_labels\.threshold: expected 0\.\.1, got 1\.5"),
    BadInput("domain shift above 1", P, "ingestion",
             at_run({"ingestion": {"embedded": {"domain_shift": 2}}}), ParameterError,
             r"^parameter ingestion\.embedded\.domain_shift: expected 0 \(no shift\) \.\. 1 "
             r"\(full shift\), got 2"),
    # predict: validated when the run starts
    BadInput("overlay opacity above 1", P, "predict",
             at_run({"predict": {"overlay_alpha": 2}}), ParameterError,
             r"^parameter predict\.overlay_alpha: expected 0 <= value <= 1, got 2"),
    BadInput("predict window batch of 0", P, "predict",
             at_run({"predict": {"window_batch": 0}}), ParameterError,
             r"^parameter predict\.window_batch: expected null or >= 1, got 0"),
    BadInput("predict inputs inside its outputs", P, "predict",
             at_run({"predict": {"input_dir": "data/07_model_output/predict/labels/mine"}}),
             ParameterError, r"^parameter predict\.input_dir: .*/labels/mine overlaps the output "
             r"folder .*data/07_model_output/predict/labels, which each predict run empties"),
    BadInput("predict outputs inside its inputs", P, "predict",
             at_run({"predict": {"input_dir": "data/07_model_output"}}), ParameterError,
             r"^parameter predict\.input_dir: .*data/07_model_output overlaps the output folder"),
    BadInput("predict inputs set where the catalog does not look", P, "predict",
             in_local({"predict": {"input_dir": "photos"}}), ParameterError,
             r"^parameter predict\.input_dir: .*/photos is not the folder the catalog's "
             r"predict_images reads \(.*/data/01_raw/predict_inputs\); expected it set on the "
             r"command line .* or as predict_input_dir in conf/<env>/globals\.yml"),
    # image errors that escaped Pillow's types
    BadInput("decompression bomb", D, "ingestion",
             lambda p: gta(p, lambda r: bomb_png(gta_image(r))),
             DataError, r"user data ü/images/00002\.png: not a readable image "
             r"\(DecompressionBombError: Image size \(10000000000 pixels\) exceeds limit"),
    BadInput("PNG text chunk too large", D, "ingestion",
             lambda p: gta(p, lambda r: text_bomb_png(gta_image(r))), DataError,
             r"user data ü/images/00002\.png: not a readable image \(ValueError: Decompressed "
             r"data too large"),
    BadInput("flipped byte in the pixel data", D, "ingestion",
             lambda p: gta(p, lambda r: broken_crc_png(gta_image(r))), DataError,
             r"user data ü/images/00002\.png: (cannot decode, truncated or corrupt|not a "
             r"readable image) \(.+\); expected a readable image \(PNG or JPEG\)"),
    BadInput("text file named .png", D, "ingestion",
             lambda p: gta(p, lambda r: gta_image(r).write_text("hello")), DataError,
             r"user data ü/images/00002\.png: not a readable image \(cannot identify image file"),
    # files that collide or cannot be named
    BadInput("a.png and a.jpg", D, "ingestion",
             lambda p: user_folder(p, COLLIDING), DataError,
             r"user data ü/photos/a\.png: has the same name 'a' as .*user data ü/photos/a\.jpg, "
             r"so one would hide the other; expected one file per name"),
    BadInput("file name not UTF-8", D, "ingestion",
             lambda p: user_folder(p, UNNAMABLE), DataError,
             r"user data ü/photos/b\\xff\.jpg: the file name is not valid UTF-8; expected UTF-8 "
             r"file names"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_before_any_work(case: BadInput, trained: Path) -> None:
    params = case.make(trained)
    before = snapshot(trained / "data")
    with pytest.raises(case.error) as info:
        run_in_process(trained, case.pipeline, params)
    message = flat(str(info.value))
    assert re.search(case.message, message), message
    assert raised_by_us(info.value), "not our own check"
    assert_unchanged(before, trained / "data")


# --------------------------------------------------------------------------- skippable

SKIPPABLE = {
    "decompression bomb": ("00002.png", lambda r: bomb_png(gta_image(r))),
    "PNG text chunk too large": ("00002.png", lambda r: text_bomb_png(gta_image(r))),
}


@pytest.mark.parametrize("name", list(SKIPPABLE))
def test_unreadable_training_image_is_skipped_when_asked(name: str, trained: Path) -> None:
    bad, damage = SKIPPABLE[name]
    params = gta(trained, damage)
    params["ingestion"] = {"skip_bad_files": True}
    run_in_process(trained, "ingestion", params)
    manifest = pd.read_csv(trained / "data" / "05_model_input" / "source_train_manifest.csv")
    assert [Path(p).name for p in manifest["image_path"]] == ["00001.png"]
    report = (trained / "data" / "08_reporting" / "ingestion_report.json").read_text()
    assert bad in report


@pytest.mark.parametrize("collision", ["a.png and a.jpg", "file name not UTF-8"])
def test_colliding_or_unnamable_files_are_skipped_when_asked(collision: str, trained: Path) -> None:
    files = COLLIDING if collision == "a.png and a.jpg" else {**UNNAMABLE, "c.png": good_photo}
    params = user_folder(trained, files)
    params["ingestion"] = {"skip_bad_files": True}
    run_in_process(trained, "ingestion", params)
    manifest = pd.read_csv(trained / "data" / "05_model_input" / "source_train_manifest.csv")
    names = sorted(Path(p).name for p in manifest["image_path"])
    assert names == (["c.png"] if collision == "a.png and a.jpg" else ["a.jpg", "c.png"])


# --------------------------------------------------------------------------- predict

PREDICT_BAD = {
    "decompression bomb": ("x.png", bomb_png, r"x\.png: not a readable image \(Decompression"),
    "PNG text chunk too large": (
        "x.png", text_bomb_png, r"x\.png: not a readable image \(ValueError: Decompressed"
    ),
    "file name not UTF-8": (
        NOT_UTF8, good_photo, r"b\\xff\.jpg: the file name is not valid UTF-8"
    ),
}  # fmt: skip


def _predict_inputs(project: Path, bad: str, write: Callable[[Path], None]) -> Params:
    folder = project / USER_DATA / "to segment"
    write_rgb(folder / "good.png", 64, 64)
    write(folder / bad)
    return {"predict": {"input_dir": str(folder)}}


@pytest.mark.parametrize("name", list(PREDICT_BAD))
def test_predict_names_an_unreadable_image(name: str, trained: Path) -> None:
    bad, write, message = PREDICT_BAD[name]
    params = _predict_inputs(trained, bad, write)
    before = snapshot(trained / "data")
    with pytest.raises(DataError) as info:
        run_in_process(trained, "predict", params)
    assert re.search(message, flat(str(info.value))), str(info.value)
    assert_unchanged(before, trained / "data")


@pytest.mark.parametrize("name", list(PREDICT_BAD))
def test_predict_skips_an_unreadable_image_when_asked(name: str, trained: Path) -> None:
    bad, write, _ = PREDICT_BAD[name]
    params = _predict_inputs(trained, bad, write)
    params["predict"]["skip_bad_files"] = True
    run_in_process(trained, "predict", params)
    labels = trained / "data" / "07_model_output" / "predict" / "labels"
    assert sorted(p.name for p in labels.iterdir()) == ["good.png"]


@pytest.mark.parametrize("where", ["command line", "globals"])
def test_predict_segments_the_folder_set_in_one_place(where: str, trained: Path) -> None:
    """``--params predict.input_dir=...`` (a real ``kedro run``) or ``predict_input_dir`` in
    conf/local/globals.yml moves the catalog's ``predict_images`` and the parameter alike."""
    folder = trained / USER_DATA / "to segment"
    write_rgb(folder / "a photo.png", 40, 70)
    write_rgb(folder / "sub" / "b.JPG", 33, 47, seed=1)
    if where == "command line":
        result = kedro(trained, "--pipeline=predict", "--params", f"predict.input_dir={folder}")
        assert result.returncode == 0, result.stdout[-3000:]
    else:
        (trained / "conf" / "local" / "globals.yml").write_text(f"predict_input_dir: {folder}\n")
        run_in_process(trained, "predict")
    labels = trained / "data" / "07_model_output" / "predict" / "labels"
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*.png")) == [
        "a photo.png",
        "sub/b.png",
    ]
    manifest = pd.read_csv(labels.parent / "inputs.csv")
    assert [Path(p).parent for p in manifest["image_path"]] == [folder, folder / "sub"]


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("missing", ["optimizer", "scheduler", "data_generator", "history"])
def test_in_training_checkpoint_missing_state_is_named(
    missing: str, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(reference, tmp_path / "project", in_progress=True)
    monkeypatch.chdir(project)
    path = project / "data" / "06_models" / "in_progress" / "warmup" / "state.pt"
    state = load_checkpoint(path)
    state.pop("format")
    del state[missing]
    save_checkpoint(path, state)
    before = snapshot(project / "data")
    with pytest.raises(CheckpointError) as info:
        run_in_process(project, "warmup")
    assert flat(str(info.value)).startswith(
        f"{path.relative_to(project)}: cannot resume from this in-training checkpoint "
        f"(KeyError: no '{missing}'); expected a complete checkpoint written by hrda-kedro"
    ), str(info.value)
    assert_unchanged(before, project / "data")


def _model(project: Path, stage: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_version(project / "data" / "06_models" / stage / "model.pt"))[
        "model"
    ]


def _differ(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_rounds_train_again_when_the_target_images_change(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``domain_shift`` redraws every target image (same names, same counts). The fingerprint
    held only the counts, so the rounds "resumed" and returned the models of the old images;
    the source images are drawn the same at any shift, so the warmup rightly resumes."""
    project = copy_project(reference, tmp_path / "project", in_progress=True)
    monkeypatch.chdir(project)
    params = {"ingestion": {"embedded": {"domain_shift": 0.9}}}
    run_in_process(project, "ingestion", params)
    with caplog.at_level(logging.INFO, logger="hrda_kedro"):
        run_in_process(project, "warmup", params)
        run_in_process(project, "self_training", params)
    assert "warmup: resuming at iteration 6" in caplog.text
    for stage in ("round_1", "round_2"):
        assert re.search(
            rf"{stage}: \S+state\.pt was trained on other data(?: and input_model)?; starting afresh",
            caplog.text,
        ), stage
        assert _differ(_model(project, stage), _model(reference, stage))


def test_warmup_trains_again_when_one_source_image_changes(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One source image rewritten in place (same name, size and count): trained afresh."""
    project = copy_project(reference, tmp_path / "project", in_progress=True)
    monkeypatch.chdir(project)
    run_in_process(project, "ingestion")  # manifests of the copy's own files
    manifest = pd.read_csv(project / "data" / "05_model_input" / "source_train_manifest.csv")
    image = Path(manifest["image_path"][0])
    pixels = np.asarray(Image.open(image)).copy()
    pixels[:8] = 255 - pixels[:8]
    Image.fromarray(pixels).save(image)
    run_in_process(project, "ingestion")
    with caplog.at_level(logging.INFO, logger="hrda_kedro"):
        run_in_process(project, "warmup")
    assert re.search(
        r"warmup: \S+state\.pt was trained on other data; starting afresh", caplog.text
    )
    assert _differ(_model(project, "source_only"), _model(reference, "source_only"))


def test_settings_that_do_not_shape_the_weights_resume(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Checkpointing more often to resume a killed run, logging, decoding, or the test-time
    windows (tapered, as the README suggests; for the warmup, the HR sliding pattern too)
    once restarted every stage from scratch, overwriting its progress; a setting that
    shapes the weights still does."""
    project = copy_project(reference, tmp_path / "project", in_progress=True)
    monkeypatch.chdir(project)
    bookkeeping = {"log_every": 5, "checkpoint_every": 7, "cache_images": False}
    params = {
        "model": {"inference": {"window_weights": "tapered", "window_batch": 1}},
        "warmup": {**bookkeeping, "decode_threads": 1},
        "self_training": bookkeeping,
    }
    # how test time slides the detail windows: the warmup never slides any
    sliding = {"model": {**params["model"], "hrda": {"hr_slide_overlapping": False}}}
    with caplog.at_level(logging.INFO, logger="hrda_kedro"):
        run_in_process(project, "warmup", {**params, **sliding})
        run_in_process(project, "self_training", params)
    assert "warmup: resuming at iteration 6" in caplog.text
    for stage in ("round_1", "round_2"):
        assert re.search(rf"{stage}: resuming at iteration \d+", caplog.text), stage
    for stage in ("source_only", "round_1", "round_2"):
        assert not _differ(_model(project, stage), _model(reference, stage)), stage
    assert "afresh" not in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hrda_kedro"):
        run_in_process(project, "warmup", {"warmup": {"optimizer": {"lr": 1e-3}}})
    assert re.search(
        r"warmup: \S+state\.pt was trained on other parameters; starting afresh", caplog.text
    )


def test_unchanged_data_in_another_folder_resumes(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The data digest holds the files' bytes, not their paths: a moved project resumes."""
    project = copy_project(reference, tmp_path / "moved", in_progress=True)
    monkeypatch.chdir(project)
    run_in_process(project, "ingestion")  # manifests now list the moved copy's paths
    with caplog.at_level(logging.INFO, logger="hrda_kedro"):
        run_in_process(project, "warmup")
    assert "warmup: resuming at iteration 6" in caplog.text


def test_a_run_that_ingests_checks_rare_class_sampling_before_training(trained: Path) -> None:
    """The rounds' setting, refused before the warmup trains (it stopped the run after it)."""
    before = snapshot(trained / "data" / "06_models")
    settings = {
        "self_training": {"rare_class_sampling": {"temperature": 0.01, "min_pixels": 10**9}}
    }
    with pytest.raises(ParameterError, match=r"^parameter self_training\.rare_class_sampling"):
        run_in_process(trained, "uda", settings)
    assert_unchanged(before, trained / "data" / "06_models")


def test_a_parallel_run_that_ingests_checks_rare_class_sampling_before_training(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with ``--runner=hrda_kedro.runner.ParallelRunner``, whose workers run the
    nodes: a spawned one skipped the check, and the warmup trained before the round refused
    the setting (forked workers: ``tests/test_runner.py``)."""
    monkeypatch.setenv("KEDRO_MP_CONTEXT", "spawn")
    before = snapshot(trained / "data" / "06_models")
    result = kedro(
        trained,
        "--pipeline=uda",
        "--runner=hrda_kedro.runner.ParallelRunner",
        "--params=self_training.rare_class_sampling.min_pixels=1000000000",
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert re.match(
        r"^ParameterError: parameter self_training\.rare_class_sampling\.min_pixels: no source "
        r"image holds",
        final_error(result.stdout),
    ), final_error(result.stdout)
    assert_unchanged(before, trained / "data" / "06_models")


def test_target_images_smaller_than_the_crop_stop_the_run_before_the_warmup(
    trained: Path,
) -> None:
    """Found by the first round, after the whole warmup, the source-only evaluation and the
    pseudo-labels: now before the first training node, or at the start of a run that does
    not ingest."""
    root = trained / USER_DATA / "target"
    write_rgb(root / "images" / "t0.png", 40, 48)
    write_rgb(root / "images" / "t1.png", 64, 128)
    params = {
        "ingestion_datasets": {
            "target_train": {"kind": "folder", "root": str(root), "labels": False}
        }
    }
    message = (
        r"^parameter model\.hrda\.context_crop: the context crop \[64, 64\] \(HxW\) does not "
        r"fit in .+/t0\.png of target_train, loaded at 40x48; expected at most the smallest"
    )
    models = trained / "data" / "06_models" / "source_only" / "model.pt"
    versions = sorted(models.iterdir())
    with pytest.raises(ParameterError, match=message):
        run_in_process(trained, "uda", params)
    assert sorted(models.iterdir()) == versions  # the warmup did not run
    with pytest.raises(ParameterError, match=message):
        run_in_process(trained, "self_training", params)
