"""Glue between validated parameters and the library: devices, models, fingerprints.

Kept out of the node modules so that every pipeline builds models, picks devices and
checks checkpoints the same way.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import json
import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from hrda_kedro.data import DataError
from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.data.torch_datasets import ManifestDataset
from hrda_kedro.hrda.checkpoint import CheckpointError
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.networks import build_network
from hrda_kedro.hrda.networks.config import NetworkConfig
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.uda.config import PseudoLabelConfig
from hrda_kedro.params import (
    ModelParams,
    NetworkParams,
    ParameterError,
    RuntimeParams,
    check_margins,
    parse,
)

LABEL_SUFFIX = "_label"
CONFIDENCE_SUFFIX = "_confidence"

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache  # process-wide and idempotent: every stage's resolve_device asks again
def keep_freed_host_memory() -> bool:
    """Make glibc keep freed tensor memory for reuse instead of handing it back to the OS.

    By default glibc serves large blocks with a fresh ``mmap`` and trims the heap top on
    ``free``. A training step or a batched sliding-window pass allocates and frees tens of
    megabytes of tensors every call, so every call page-faults and zero-fills all of that
    memory again: 55 000 page faults per 0.3 s batched prediction on the project's CPU
    configuration (``benchmarks/inference.py``), which made batched windows slower than
    one by one.
    PyTorch's CPU tuning guide cures this by preloading jemalloc or tcmalloc; ``mallopt``
    does the same for glibc without a preload. Blocks above 32 MiB (glibc's ceiling) still
    use ``mmap``. The cost is memory: the resident set no longer shrinks between steps and
    fragmentation raises the high-water mark (default ``uda`` run: 1.9 GB instead of 1.5 GB,
    for 6 % less wall time). Returns whether it applied (glibc only).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    applied = bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    if not applied:
        logger.warning("glibc refused mallopt: freed host memory is returned to the OS as usual")
    return applied


def resolve_device(runtime: RuntimeParams, rank: int = 0) -> DeviceSetup:
    """CPU or CUDA from ``runtime.device``; bf16 autocast and channels_last on CUDA.

    Also applies the process-wide settings: ``runtime.keep_freed_host_memory``, and TF32
    and cuDNN autotuning on CUDA.
    """
    if runtime.keep_freed_host_memory:
        keep_freed_host_memory()
    name = runtime.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(
            f"parameter runtime.device: {runtime.device!r} asked for, but CUDA is not available"
        )
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", rank)
    on_gpu = device.type == "cuda"
    precision = runtime.precision if runtime.precision != "auto" else ("bf16" if on_gpu else "fp32")
    channels_last = runtime.channels_last == "on" or (runtime.channels_last == "auto" and on_gpu)
    if on_gpu:
        torch.set_float32_matmul_precision(runtime.matmul_precision)
        torch.backends.cudnn.benchmark = True
    return DeviceSetup(
        device=device,
        autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
        channels_last=channels_last,
    )


def network_config(network: NetworkParams) -> NetworkConfig:
    return NetworkConfig(
        architecture=network.architecture,
        encoder=network.encoder,
        num_classes=network.num_classes,
        decoder_embed_dim=network.decoder_embed_dim,
        attention_embed_dim=network.attention_embed_dim,
        attention_classwise=network.attention_classwise,
        dropout=network.dropout,
        pretrained=network.pretrained,
    )


def build_model(model: ModelParams, *, load_pretrained: bool = True) -> HRDAModel:
    """The HRDA model described by ``model`` (pretrained encoder weights if configured)."""
    config = network_config(model.network)
    if not load_pretrained:
        config = dataclasses.replace(config, pretrained=None)
    network = build_network(config)
    h = model.hrda
    return HRDAModel(
        network,
        scale=h.scale,
        detail_hw=h.detail_crop,
        mode=h.mode,
        fixed_attention=h.fixed_attention,
        hr_window_batch=model.inference.hr_window_batch,
    )


def model_params_dict(model: ModelParams) -> dict[str, Any]:
    """Plain-dict form stored in checkpoints (loads with ``weights_only=True``)."""
    return json.loads(json.dumps(dataclasses.asdict(model)))


def model_from_checkpoint(
    checkpoint: dict[str, Any], source: str, *, teacher: bool = False
) -> tuple[HRDAModel, ModelParams]:
    """Rebuild the model a checkpoint was trained with and load its weights.

    ``teacher=True`` loads the EMA teacher's weights when the checkpoint has them.
    """
    if "model_params" not in checkpoint or "model" not in checkpoint:
        raise CheckpointError(f"{source}: not a trained-model checkpoint (no model_params/model)")
    params = parse(ModelParams, checkpoint["model_params"], f"{source}:model_params")
    model = build_model(params, load_pretrained=False)
    state = (
        checkpoint["teacher"]
        if teacher and checkpoint.get("teacher") is not None
        else checkpoint["model"]
    )
    load_weights(model, state, source)
    return model, params


def load_weights(model: HRDAModel, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a message that says which shapes or keys disagree."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or mismatched:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else "",
                f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
                if unexpected
                else "",
                f"shape mismatch {mismatched[:3]}" if mismatched else "",
            )
            if part
        )
        raise CheckpointError(
            f"{source}: weights do not fit the configured model (another architecture or "
            f"class count?): {details}"
        )
    model.load_state_dict(state)


NETWORK_FIELDS = (
    "architecture",
    "encoder",
    "num_classes",
    "decoder_embed_dim",
    "attention_embed_dim",
    "attention_classwise",
)


def check_compatible(
    checkpoint_params: ModelParams,
    wanted: ModelParams,
    source: str,
    fields: tuple[str, ...] = NETWORK_FIELDS,
) -> None:
    """Stop when a checkpoint's network differs from the configured one in ``fields``.

    Evaluation rebuilds any network from its checkpoint, so it checks ``num_classes`` only:
    the class count must match the labels it is scored against.
    """
    a, b = checkpoint_params.network, wanted.network
    for name in fields:
        if getattr(a, name) != getattr(b, name):
            raise CheckpointError(
                f"{source}: checkpoint has model.network.{name}={getattr(a, name)!r}, "
                f"the parameters ask for {getattr(b, name)!r}"
            )


def fingerprint(**parts: Any) -> str:
    """Stable hashes of named JSON-able parts, ``data=1a2b... parameters=3c4d...``.

    A stage resumes only from a checkpoint of the same fingerprint; when they differ the
    trainer names the parts that changed, so the log says why a stage re-runs.
    """
    return " ".join(
        f"{name}={hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]}"
        for name, value in sorted(parts.items())
    )


def check_images_fit(
    manifest: pd.DataFrame, model: ModelParams, split: str, margins: PseudoLabelConfig | None = None
) -> None:
    """Before the first step: the context crop fits in every image (and the margins leave
    pixels of it), for data sets whose sizes only their manifests know (folders)."""
    if not len(manifest):
        return
    heights, widths = manifest["load_height"].astype(int), manifest["load_width"].astype(int)
    smallest = (int(heights.min()), int(widths.min()))
    crop = model.hrda.context_crop
    if crop[0] > smallest[0] or crop[1] > smallest[1]:
        at = int(((heights < crop[0]) | (widths < crop[1])).to_numpy().argmax())
        raise ParameterError(
            f"parameter model.hrda.context_crop: the context crop {list(crop)} (HxW) does not "
            f"fit in {manifest['image_path'].iloc[at]} of {split}, loaded at "
            f"{heights.iloc[at]}x{widths.iloc[at]}; expected at most the smallest image "
            f"({smallest[0]}x{smallest[1]}): lower the crop or resize the data set"
        )
    if margins is not None and margins.margins_reference_size is None:
        check_margins(
            margins.margins, smallest, "self_training.pseudo_labels", f" of {split} (smallest)"
        )


# What a manifest row's training data are: the files' bytes and the size they are loaded at
# (not their paths: a project moved to another disk resumes).
_CONTENT_COLUMNS = ("name", "content_sha256", "load_height", "load_width")


def manifest_digest(manifest: pd.DataFrame) -> str:
    """sha256 of a manifest's data content, so that a stage re-runs when its images change."""
    missing = [c for c in _CONTENT_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(
            f"manifest without the columns {missing}: written by an older version; expected "
            "one written by the ingestion pipeline, re-run it (kedro run --pipeline=ingestion)"
        )
    rows = manifest[list(_CONTENT_COLUMNS)].astype(str).to_numpy().tolist()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


# --------------------------------------------------------------------------- data


def source_datasets(
    manifest: pd.DataFrame, class_pixel_counts: pd.DataFrame, train: TrainingConfig
) -> tuple[ManifestDataset, np.ndarray]:
    """Labelled source images and their per-image class pixel counts (for RCS)."""
    counts = class_pixel_counts[list(CITYSCAPES_CLASSES)].to_numpy(dtype=np.int64)
    if len(counts) != len(manifest):
        raise ValueError(
            f"source_class_pixel_counts has {len(counts)} rows but source_train_manifest "
            f"{len(manifest)}: re-run the ingestion pipeline"
        )
    return ManifestDataset(manifest, labels=True, cache=train.cache_images), counts


class PseudoLabelledDataset(Dataset):
    """Target images with materialized pseudo-labels and confidences (offline mode)."""

    def __init__(
        self,
        images: ManifestDataset,
        partition_ids: list[str],
        partitions: dict[str, Callable[[], Image.Image]],
    ) -> None:
        missing = [pid for pid in partition_ids if pid + LABEL_SUFFIX not in partitions]
        if missing:
            raise ValueError(
                f"offline pseudo-labels: no materialized label for {len(missing)} target "
                f"images (first: {missing[0]}); re-run materialize_pseudo_labels"
            )
        self.images = images
        self.partition_ids = partition_ids
        self.partitions = partitions

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.images[index])
        pid = self.partition_ids[index]
        label = np.asarray(self.partitions[pid + LABEL_SUFFIX]())
        confidence = np.asarray(self.partitions[pid + CONFIDENCE_SUFFIX]())
        item["label"] = torch.from_numpy(label.astype(np.int64))
        item["weight"] = torch.from_numpy(confidence.astype(np.float32) / 255.0)
        return item


def partition_id(image_path: str) -> str:
    """Partition name of an image's pseudo-label files: its file stem."""
    return Path(image_path).name.rsplit(".", 1)[0]


def target_dataset(
    manifest: pd.DataFrame,
    pseudo_labels: dict[str, Callable[[], Image.Image]] | None,
    cache: bool,
) -> Dataset:
    """Target-train images without their labels; with pseudo-labels in offline mode."""
    images = ManifestDataset(manifest, labels=False, cache=cache)
    if pseudo_labels is None:
        return images
    ids = [partition_id(p) for p in manifest["image_path"]]
    return PseudoLabelledDataset(images, ids, pseudo_labels)


def image_dataset(manifest: pd.DataFrame) -> ManifestDataset:
    return ManifestDataset(manifest, labels=False)


def labelled_dataset(manifest: pd.DataFrame) -> ManifestDataset:
    return ManifestDataset(manifest, labels=True)


def read_label(path: str) -> torch.Tensor:
    """A trainId label PNG as an int64 tensor."""
    with Image.open(path) as file:
        return torch.from_numpy(np.asarray(file).astype(np.int64))
