"""Nodes of one self-training round."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.image_streams import map_in_streams
from hrda_kedro.hrda.inference import predict_full_image
from hrda_kedro.hrda.metrics import confusion_matrix, summarize
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.networks import build_network
from hrda_kedro.hrda.networks.base import SegmentationNetwork
from hrda_kedro.hrda.training.distributed import state_digest
from hrda_kedro.params import RuntimeParams, SelfTrainingParams, parse
from hrda_kedro.progress import LogProgress
from hrda_kedro.runtime.devices import resolve_device
from hrda_kedro.runtime.fingerprints import fingerprint, manifest_digest, trained_settings
from hrda_kedro.runtime.models import check_compatible, model_from_checkpoint
from hrda_kedro.runtime.training_data import (
    CONFIDENCE_SUFFIX,
    LABEL_SUFFIX,
    check_images_fit,
    image_dataset,
    partition_ids,
    read_label,
    target_dataset,
)
from hrda_kedro.stages import checkpoint_payload, run_stage, source_stage_job

logger = logging.getLogger(__name__)


def input_model_name(input_model: dict[str, Any]) -> str:
    """How errors name the input checkpoint: by its stage, which names its catalog entry."""
    return f"input model ({input_model.get('stage', 'no stage recorded')})"


class _PseudoLabelWriter:
    """Lazy partitions: each image is predicted once, when its first file is saved.

    Kedro's PartitionedDataset saves partitions in sorted key order; ``predictions`` yields
    ``(index, prediction)`` in the order of the images' first files in it, computed ahead by
    the prediction streams. A prediction is kept until both of its files are written, so
    memory holds a few images whatever the size of the data set.
    """

    FILES_PER_IMAGE = 2

    def __init__(
        self,
        predictions: Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]],
        predict: Callable[[int], tuple[np.ndarray, np.ndarray]],
        progress: LogProgress,
    ) -> None:
        self._predictions = predictions
        self._predict = predict  # a file asked for again after its image was released
        self._progress = progress
        self._held: dict[int, list[Any]] = {}

    def _get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        while index not in self._held:
            produced = next(self._predictions, None)
            if produced is None:
                return self._predict(index)
            self._held[produced[0]] = [produced[1], self.FILES_PER_IMAGE]
            self._progress.update()
        entry = self._held[index]
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[index]
        return entry[0]

    def label(self, index: int) -> Image.Image:
        return Image.fromarray(self._get(index)[0])

    def confidence(self, index: int) -> Image.Image:
        return Image.fromarray(self._get(index)[1])


def materialize_pseudo_labels(
    input_model: dict[str, Any],
    target_train_manifest: pd.DataFrame,
    model: dict[str, Any],
    runtime: dict[str, Any],
) -> dict[str, Callable[[], Image.Image]]:
    """The teacher's HRDA pseudo-labels (trainId PNG) and confidence (0-255 PNG) per image.

    Uses the input checkpoint's EMA teacher (its student if it has none) with full-image
    multi-resolution sliding-window inference, as at test time.
    """
    if target_train_manifest.empty:
        raise ValueError(
            "target_train_manifest has no images (ingestion_datasets.target_train is null): "
            "self-training needs target images; expected self_training.rounds: 0 for "
            "source-only training, or a target_train data set"
        )
    model_params = parse(ModelConfig, model, "model")
    runtime_params = parse(RuntimeParams, runtime, "runtime")
    source = input_model_name(input_model)
    teacher, trained_params = model_from_checkpoint(
        input_model, source, teacher=True, inference=model_params.inference
    )
    check_compatible(trained_params, model_params, source)
    setup = resolve_device(runtime_params)
    teacher = setup.place(teacher).eval()
    windows = trained_params.sliding_windows()
    images = image_dataset(target_train_manifest)

    @torch.no_grad()
    def predict(index: int) -> tuple[np.ndarray, np.ndarray]:
        image = images[index]["image"].unsqueeze(0).to(setup.device)  # decoded in the stream
        with setup.autocast():
            logits = predict_full_image(teacher, normalize(image), windows)
        probs = torch.softmax(logits.float(), dim=1)
        confidence, label = probs.max(dim=1)
        return (
            label[0].to(torch.uint8).cpu().numpy(),
            (confidence[0] * 255).round().to(torch.uint8).cpu().numpy(),
        )

    partitions: dict[str, Callable[[], Image.Image]] = {}
    index_of: dict[str, int] = {}
    for index, pid in enumerate(partition_ids(target_train_manifest)):
        partitions[pid + LABEL_SUFFIX] = lambda i=index: writer.label(i)
        partitions[pid + CONFIDENCE_SUFFIX] = lambda i=index: writer.confidence(i)
        index_of[pid + LABEL_SUFFIX] = index_of[pid + CONFIDENCE_SUFFIX] = index
    save_order = list(dict.fromkeys(index_of[key] for key in sorted(partitions)))
    predictions = map_in_streams(
        lambda index: (index, predict(index)), save_order, setup.predict_streams
    )
    progress = LogProgress(len(target_train_manifest), f"pseudo-labels of {source}")
    writer = _PseudoLabelWriter(predictions, predict, progress)
    logger.info("materializing pseudo-labels for %d target images", len(target_train_manifest))
    return partitions


def assess_pseudo_labels(
    pseudo_labels: dict[str, Callable[[], Image.Image]],
    target_train_manifest: pd.DataFrame,
    model: dict[str, Any],
    self_training: dict[str, Any],
) -> dict[str, Any]:
    """Pseudo-label quality: mIoU against the target-train labels where they exist, and the
    share of pixels at or above the training's confidence threshold.

    Target-train labels are read here only, to measure; they never reach training.
    """
    num_classes = parse(ModelConfig, model, "model").network.num_classes
    threshold = parse(SelfTrainingParams, self_training, "self_training").pseudo_labels.threshold
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    confident = 0.0
    count = 0
    for pid, (_, row) in zip(
        partition_ids(target_train_manifest), target_train_manifest.iterrows(), strict=True
    ):
        pred = torch.from_numpy(np.array(pseudo_labels[pid + LABEL_SUFFIX](), dtype=np.int64))
        conf = np.asarray(pseudo_labels[pid + CONFIDENCE_SUFFIX]())
        # The same test offline training applies to the stored 0-255 confidence.
        confident += float((conf.astype(np.float32) / 255.0 >= threshold).mean())
        count += 1
        label_path = row.get("label_path")
        if isinstance(label_path, str) and label_path:
            cm += confusion_matrix(pred, read_label(label_path), num_classes)
    report: dict[str, Any] = {"images": count, "confident_pixel_share": confident / max(count, 1)}
    if cm.sum() > 0:
        report.update(summarize(cm, CITYSCAPES_CLASSES[:num_classes]))
    return report


def imagenet_network(model: ModelConfig, train: SelfTrainingParams) -> SegmentationNetwork | None:
    """A frozen copy of the ImageNet-pretrained network for the feature distance, if enabled."""
    if not train.feature_distance.enabled:
        return None
    config = dataclasses.replace(model.network, pretrained=train.feature_distance.pretrained)
    return build_network(config)


def train_round(
    input_model: dict[str, Any],
    source_train_manifest: pd.DataFrame,
    source_class_pixel_counts: pd.DataFrame,
    target_train_manifest: pd.DataFrame,
    pseudo_labels: dict[str, Callable[[], Image.Image]],
    model: dict[str, Any],
    self_training: dict[str, Any],
    runtime: dict[str, Any],
    *,
    stage: str,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Adapt to the target domain for one round, starting from the input model and teacher.

    ``stage`` (``round_<k>``, bound by the template) names the round's work folder and its
    checkpoint.
    """
    model_params = parse(ModelConfig, model, "model")
    train_params = parse(SelfTrainingParams, self_training, "self_training")
    runtime_params = parse(RuntimeParams, runtime, "runtime")
    source = input_model_name(input_model)
    _, trained_params = model_from_checkpoint(input_model, source)
    check_compatible(trained_params, model_params, source)
    check_images_fit(
        target_train_manifest, model_params, "target_train", train_params.pseudo_labels
    )
    offline = train_params.pseudo_labels.source == "offline"
    input_digest = state_digest(input_model["model"])
    job = source_stage_job(
        stage,
        model_params,
        train_params,
        runtime_params,
        source_train_manifest,
        source_class_pixel_counts,
        uda=train_params,
        target=target_dataset(
            target_train_manifest,
            pseudo_labels if offline else None,
            cache=train_params.cache_images,
        ),
        init_model=input_model["model"],
        init_teacher=input_model.get("teacher"),
        imagenet_network=imagenet_network(model_params, train_params),
        fingerprint=fingerprint(
            parameters=(
                trained_settings(model, self_training, reads_inference=offline),
                runtime_params.seed,
            ),
            input_model=input_digest,
            data=(manifest_digest(source_train_manifest), manifest_digest(target_train_manifest)),
        ),
    )
    result = run_stage(job)
    # The model it started from, so that reports can tell a chain of rounds from a mix of
    # two runs' (a run stopped between rounds and re-run in part).
    payload = checkpoint_payload(result, model_params, stage, input_model_sha256=input_digest)
    return payload, pd.DataFrame(result.history)
