"""Nodes of the ``predict`` pipeline.

The images come from the catalog's ``predict_images`` folder, listed but not read; outputs
are written lazily through ``PartitionedDataset``s: each image is read, predicted and saved
one at a time, so a folder of any size never sits in memory.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.io import DatasetError
from PIL import Image
from tqdm.auto import tqdm

from hrda_kedro.data import DataError, MissingFolderError
from hrda_kedro.data.labels import colorize
from hrda_kedro.data.layouts import printable
from hrda_kedro.data.validation import check_folder, read_image
from hrda_kedro.datasets.checkpoint_dataset import CheckpointDataset
from hrda_kedro.datasets.export_datasets import CONFIG_FILE, WEIGHTS_FILE, ExportedModelDataset
from hrda_kedro.datasets.image_folder import IMAGE_SUFFIXES, ImageFolder
from hrda_kedro.export import checkpoint_from_export
from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.checkpoint import CheckpointError
from hrda_kedro.hrda.image_streams import map_in_streams
from hrda_kedro.hrda.inference import predict_full_image_labels
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.params import ParameterError, PredictParams, RuntimeParams, parse
from hrda_kedro.runtime.devices import resolve_device
from hrda_kedro.runtime.models import model_from_checkpoint

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("partition_id", "image_path", "height", "width")


def _partition_ids(paths: list[Path], folder: Path) -> list[str]:
    """Output names: the relative path without its suffix, with it where two would clash.

    ``a.png`` and ``a.jpg`` in one folder must not overwrite each other's outputs.
    """
    stems = [p.relative_to(folder).with_suffix("").as_posix() for p in paths]
    counts = Counter(stems)
    ids = [
        stem if counts[stem] == 1 else path.relative_to(folder).as_posix()
        for stem, path in zip(stems, paths, strict=True)
    ]
    clashes = [name for name, n in Counter(ids).items() if n > 1]
    if clashes:
        raise DataError(f"{folder}: several input files would write outputs named {clashes[0]!r}")
    return ids


def list_inputs(predict_images: ImageFolder, predict: dict[str, Any]) -> pd.DataFrame:
    """Check every image of the catalog's ``predict_images`` folder before any model work.

    Every image is fully decoded here, so a bad file stops the run (or, with
    ``skip_bad_files``, is left out) before a single output is written.
    """
    params = parse(PredictParams, predict, "predict")
    folder = predict_images.root
    if folder.is_file():
        raise MissingFolderError(
            f"{folder}: a file, not a folder; expected a folder of images to segment "
            f"(parameter predict.input_dir), such as the one holding it: {folder.parent}"
        )
    check_folder(folder, "a folder of images to segment (parameter predict.input_dir)")
    others = [p for p in predict_images.files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if predict_images.hidden:
        logger.info(
            "ignoring %d hidden files and folders (names starting with '.'): %s",
            len(predict_images.hidden),
            _some(predict_images.hidden, folder),
        )
    if not predict_images:
        found = "it is empty"
        if others:
            found = f"it holds {len(others)} other files: {_some(others, folder)}"
        elif predict_images.hidden:
            found = f"it holds only hidden files: {_some(predict_images.hidden, folder)}"
        raise MissingFolderError(  # a folder without images: the advice is a folder's
            f"{folder}: no image to segment ({', '.join(IMAGE_SUFFIXES)}, any case, subfolders "
            f"included); {found}; expected the folder of your images, set by "
            '--params "predict.input_dir=..." or predict_input_dir in conf/<env>/globals.yml'
        )
    if others:
        logger.info(
            "ignoring %d files that are not images (%s): %s",
            len(others),
            ", ".join(IMAGE_SUFFIXES),
            _some(others, folder),
        )
    readable, sizes = [], []
    for name, read in predict_images.items():
        path = predict_images.path(name)
        try:
            if printable(path) != str(path):  # no CSV nor output name can hold it
                raise DataError(
                    f"{printable(path)}: the file name is not valid UTF-8; expected UTF-8 "
                    "file names (rename the file)"
                )
            pixels = read()
        except DataError as err:
            if not params.skip_bad_files:
                raise
            logger.warning("skipping %s", err)
            continue
        readable.append(path)
        sizes.append(pixels.shape[:2])
    if not readable:
        raise DataError(f"{folder}: none of its {len(predict_images)} images is readable")
    logger.info("%d images to segment in %s", len(readable), folder)
    return pd.DataFrame(
        {
            "partition_id": _partition_ids(readable, folder),
            "image_path": [str(p) for p in readable],
            "height": [h for h, _ in sizes],
            "width": [w for _, w in sizes],
        },
        columns=list(MANIFEST_COLUMNS),
    )


def _some(paths: Sequence[Path], folder: Path, shown: int = 3) -> str:
    """The first few of ``paths``, relative to ``folder``: a user sees which photos are left
    out (a ``.webp``, a ``.tiff``) without a line per file."""
    names = [printable(p.relative_to(folder)) for p in paths[:shown]]
    return ", ".join(names + ["..."] * (len(paths) > shown))


def load_checkpoint_file(
    path: str, setting: str = "parameter predict.checkpoint"
) -> tuple[dict[str, Any], Path]:
    """A checkpoint file, the latest version in a versioned checkpoint folder, or an
    exported model (a folder with ``model.safetensors`` and ``config.json``, or either file).

    Versioned catalog datasets store ``<path>/<timestamp>/<file name>``; timestamps sort
    in time order, as Kedro resolves them. ``setting`` is what named the path, for the
    message (a script's ``argument --checkpoint``).
    """
    target = Path(path).expanduser()
    export = _export_folder(target, setting)
    if export is not None:
        exported = _loaded(ExportedModelDataset(filepath=str(export)), setting)
        return checkpoint_from_export(exported["weights"], exported["config"], str(export)), export
    if target.is_dir():
        versions = sorted(p for p in target.glob(f"*/{target.name}") if p.is_file())
        if not versions:
            raise ParameterError(
                f"{setting}: {target}: no saved version in this folder "
                f"(a versioned checkpoint folder holds <timestamp>/{target.name}){_inside(target)}"
            )
        target = versions[-1]
    elif not target.is_file():
        raise ParameterError(
            f"{setting}: {target}: checkpoint not found; expected a "
            "checkpoint file, a versioned checkpoint folder or an exported model folder "
            "(train a model first, e.g. kedro run --pipeline=uda)"
        )
    return _loaded(CheckpointDataset(filepath=str(target)), setting), target


def _loaded(dataset: Any, setting: str) -> Any:
    """The dataset's data; our own error under Kedro's ``DatasetError`` (whose text is the
    dataset's repr) comes out as itself, after the setting that named the file."""
    try:
        return dataset.load()
    except DatasetError as err:
        cause = err.__cause__
        if isinstance(cause, CheckpointError | DataError):
            raise type(cause)(f"{setting}: {cause}") from err
        raise


def check_checkpoint_setting(predict: dict[str, Any], model: dict[str, Any]) -> None:
    """When the run starts: the model ``predict.checkpoint`` names loads and takes the run's
    ``model.inference``. A wrong path once stopped the run only after every image had been
    decoded and ``inputs.csv`` replaced, beside the previous run's labels."""
    params = parse(PredictParams, predict, "predict")
    if params.checkpoint is None:
        return
    inference = parse(ModelConfig, model, "model").inference
    checkpoint, path = load_checkpoint_file(params.checkpoint)
    model_from_checkpoint(checkpoint, str(path), inference=inference)


def _export_folder(target: Path, setting: str) -> Path | None:
    """The exported model ``target`` names (its folder, or one of its two files), or None.

    A user points at the file they see: the weights, ``config.json`` or the ONNX graph
    beside them; each would otherwise be read as a pickled checkpoint and refused as unsafe.
    """
    is_member = target.suffix == ".safetensors" or target.name == CONFIG_FILE
    folder = target.parent if target.is_file() and is_member else target
    if target.suffix.lower() == ".onnx":
        beside = (target.parent / WEIGHTS_FILE).is_file()
        raise ParameterError(
            f"{setting}: {target}: an ONNX graph, which predict does not run (it is for "
            f"runtimes without PyTorch); expected the export folder holding {WEIGHTS_FILE} "
            f"and {CONFIG_FILE}{f' ({target.parent})' if beside else ''} or a checkpoint"
        )
    present = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if (folder / name).is_file()]
    if len(present) == 1:
        missing = CONFIG_FILE if present == [WEIGHTS_FILE] else WEIGHTS_FILE
        raise ParameterError(
            f"{setting}: {folder}: {missing} is missing next to {present[0]}, an incomplete "
            "export; expected both files, made by kedro run --pipeline=export"
        )
    return folder if present else None


def _inside(folder: Path) -> str:
    """The versioned checkpoints and exports under ``folder`` (a stage's folder, say), as
    the message's hint of what ``predict.checkpoint`` may name instead."""
    found = sorted(
        {p.parent.parent for p in folder.glob("*/*/*") if p.name == p.parent.parent.name}
        | {p.parent for p in folder.glob(f"*/{CONFIG_FILE}") if (p.parent / WEIGHTS_FILE).is_file()}
    )
    if not found:
        return "; expected a checkpoint file, a versioned checkpoint folder or an exported model"
    return f"; the checkpoints under it: {', '.join(map(str, found[:4]))}"


# Images up to a Cityscapes frame are predicted several at once on a CPU
# (``runtime.predict_streams``); a folder holding a larger one goes one image at a time, so
# a large photo's memory stays what one stream needs and its windows show progress.
STREAMED_PIXELS_MAX = 2048 * 1024


class _LazyOutputs:
    """Each image's outputs, computed ahead by the prediction streams in the order Kedro
    saves the labels (sorted partition ids), held until every one of its outputs is saved.

    Kedro saves a node's outputs one dataset after the other, so with attention maps on,
    the maps (one byte per pixel) wait in memory while the labels are written.
    """

    def __init__(
        self,
        predictions: Iterator[tuple[int, dict[str, Image.Image]]],
        predict: Callable[[int], dict[str, Image.Image]],
    ) -> None:
        self._predictions = predictions
        self._predict = predict  # an output asked for again after its image was released
        self._pending: dict[int, dict[str, Image.Image]] = {}

    def get(self, index: int, kind: str) -> Image.Image:
        while index not in self._pending:
            produced = next(self._predictions, None)
            if produced is None:
                self._pending[index] = self._predict(index)
                break
            self._pending[produced[0]] = produced[1]
        outputs = self._pending[index]
        image = outputs.pop(kind)
        if not outputs:
            del self._pending[index]
        return image


def segment_images(
    predict_manifest: pd.DataFrame,
    predict: dict[str, Any],
    model: dict[str, Any],
    runtime: dict[str, Any],
    catalog_model: dict[str, Any] | None = None,
) -> tuple[dict[str, Callable[[], Image.Image]], dict[str, Callable[[], Image.Image]]]:
    """TrainId label PNGs and, if asked for, scale-attention maps of every listed image.

    The network is rebuilt from the checkpoint's own parameters (not the run's ``model``),
    so any trained checkpoint works; the student is used, as in evaluation. The sliding
    windows are the run's ``model.inference``, as in evaluation, with ``predict``'s own
    ``window_batch`` and ``window_weights`` where set. An attention
    map holds, per pixel, the attention of the predicted class: 0 = all LR context,
    255 = all HR detail. On a CPU, images up to :data:`STREAMED_PIXELS_MAX` pixels are
    predicted ``runtime.predict_streams`` at once, one thread each; each image's labels are
    those of a one-image loop on one thread.
    """
    params = parse(PredictParams, predict, "predict")
    inference = parse(ModelConfig, model, "model").inference
    runtime_params = parse(RuntimeParams, runtime, "runtime")
    setup = resolve_device(runtime_params)
    if params.checkpoint is not None:  # a path wins over the catalog's model
        checkpoint, path = load_checkpoint_file(params.checkpoint)
    elif catalog_model is not None:
        stage = catalog_model.get("stage", "model")
        checkpoint, path = catalog_model, f"the catalog's {stage} checkpoint"
    else:
        raise DataError(
            "parameter predict.checkpoint: expected a checkpoint path (this predict pipeline "
            "reads no model dataset)"
        )
    net, trained = model_from_checkpoint(checkpoint, str(path), inference=inference)
    net = setup.place(net).eval()
    attention = params.attention
    if attention and net.mode in ("lr_only", "hr_only"):
        logger.warning("the model (mode %s) has no scale attention: no maps written", net.mode)
        attention = False
    windows = trained.sliding_windows(params.window_batch, params.window_weights)
    logger.info(
        "predicting with %s (stage %s, mode %s) on %s",
        path,
        checkpoint.get("stage"),
        net.mode,
        setup.device,
    )
    rows = predict_manifest.to_dict(orient="records")
    largest = int((predict_manifest["height"] * predict_manifest["width"]).max())
    streams = setup.predict_streams if largest <= STREAMED_PIXELS_MAX else 1
    finished = itertools.count(1)  # images finished, in whichever stream (atomic under the GIL)

    @torch.no_grad()
    def run(index: int) -> dict[str, Image.Image]:
        row = rows[index]
        start = time.perf_counter()
        pixels = torch.from_numpy(read_image(Path(row["image_path"])))
        image = normalize(pixels.permute(2, 0, 1).unsqueeze(0).to(setup.device))
        bar = tqdm(  # one image at a time only: several bars at once would garble
            desc=f"{row['partition_id']} windows",
            leave=False,
            disable=not runtime_params.progress_bar or streams > 1,
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        with setup.autocast(), bar:
            # Labels band by band: the full-resolution logits of a large photo never exist.
            label, weights = predict_full_image_labels(
                net, image, windows, attention=attention, progress=progress
            )
        label = label[0]
        outputs = {"label": Image.fromarray(label.to(torch.uint8).cpu().numpy())}
        if weights is not None:
            scaled = (weights[0].float().clamp(0, 1) * 255).round().to(torch.uint8)
            outputs["attention"] = Image.fromarray(scaled.cpu().numpy())
        logger.info(
            "segmented %d/%d %s (%dx%d) in %.1f s",
            next(finished),
            len(rows),
            row["partition_id"],
            pixels.shape[1],
            pixels.shape[0],
            time.perf_counter() - start,
        )
        return outputs

    ids = [str(row["partition_id"]) for row in rows]
    save_order = sorted(range(len(ids)), key=ids.__getitem__)  # PartitionedDataset's order
    if streams > 1:
        logger.info("%d images at once, one stream each", streams)
    outputs = _LazyOutputs(map_in_streams(lambda i: (i, run(i)), save_order, streams), run)
    labels = {pid: lambda i=i: outputs.get(i, "label") for i, pid in enumerate(ids)}
    maps = (
        {pid: lambda i=i: outputs.get(i, "attention") for i, pid in enumerate(ids)}
        if attention
        else {}
    )
    return labels, maps


def draw_overlays(
    predict_manifest: pd.DataFrame,
    predict_labels: dict[str, Callable[[], Image.Image]],
    predict: dict[str, Any],
) -> dict[str, Callable[[], Image.Image]]:
    """Each image blended with its saved label in the Cityscapes palette.

    Drawn from the label files on disk, so overlays can be redrawn (another
    ``overlay_alpha``) without predicting again: ``--nodes=draw_overlays``.
    """
    alpha = parse(PredictParams, predict, "predict").overlay_alpha
    missing = [pid for pid in predict_manifest["partition_id"] if pid not in predict_labels]
    if missing:
        raise DataError(
            f"no saved label for {missing[0]!r} ({len(missing)} missing): run segment_images"
        )

    def overlay(pid: str, image_path: str) -> Image.Image:
        image = read_image(Path(image_path)).astype(np.float32)
        label = np.asarray(predict_labels[pid]())
        if label.shape != image.shape[:2]:  # labels of another listing (--nodes=draw_overlays)
            raise DataError(
                f"saved label {pid!r} is {label.shape[1]}x{label.shape[0]} (WxH) but "
                f"{image_path} is {image.shape[1]}x{image.shape[0]}: the labels belong to "
                "another listing; expected segment_images run on this one (kedro run "
                "--pipeline=predict)"
            )
        colors = colorize(label).astype(np.float32)
        return Image.fromarray(((1 - alpha) * image + alpha * colors).round().astype(np.uint8))

    return {
        pid: lambda pid=pid, path=path: overlay(pid, path)
        for pid, path in zip(
            predict_manifest["partition_id"], predict_manifest["image_path"], strict=True
        )
    }
