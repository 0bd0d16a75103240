"""Nodes of the evaluation pipeline."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.image_streams import map_in_streams
from hrda_kedro.hrda.inference import (
    predict_full_image_branches,
    predict_full_image_with_attention,
)
from hrda_kedro.hrda.metrics import confusion_matrix, summarize
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.model_config import ModelConfig, SlidingWindows
from hrda_kedro.hrda.training.distributed import state_digest
from hrda_kedro.params import EvaluationParams, RuntimeParams, parse
from hrda_kedro.progress import LogProgress
from hrda_kedro.reports.figures import (
    ModelView,
    QualitativeSample,
    per_class_iou_figure,
    pseudo_label_quality_figure,
    qualitative_figure,
    training_curves_figure,
)
from hrda_kedro.reports.tables import json_ready, pseudo_label_quality_table
from hrda_kedro.runtime.devices import resolve_device
from hrda_kedro.runtime.models import check_compatible, model_from_checkpoint
from hrda_kedro.runtime.training_data import labelled_dataset

logger = logging.getLogger(__name__)


PRIMARY_TARGET = "target_val"


@torch.no_grad()
def evaluate_model(
    checkpoint: dict[str, Any],
    target_val_manifest: pd.DataFrame,
    model: dict[str, Any],
    evaluation: dict[str, Any],
    runtime: dict[str, Any],
    extra_targets_manifest: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Confusion matrices of one model on target val, for each prediction mode.

    The same for every extra target (the rows of ``extra_targets_manifest``, grouped by
    their ``split``), under ``targets``. The student is evaluated (not the EMA teacher),
    as in the paper.
    """
    model_params = parse(ModelConfig, model, "model")
    eval_params = parse(EvaluationParams, evaluation, "evaluation")
    setup = resolve_device(parse(RuntimeParams, runtime, "runtime"))
    stage = str(checkpoint.get("stage"))
    net, trained = model_from_checkpoint(checkpoint, stage, inference=model_params.inference)
    check_compatible(trained, model_params, stage, fields=("num_classes",))
    net = setup.place(net).eval()
    windows = trained.sliding_windows()

    def predicted(data: Any, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        item = data[index]  # decoded in the prediction stream
        image = normalize(item["image"].unsqueeze(0).to(setup.device))
        with setup.autocast():
            branches = predict_full_image_branches(net, image, windows)
        modes = [mode for mode in eval_params.predictions if mode in branches]
        return {mode: branches[mode].argmax(dim=1)[0].cpu() for mode in modes}, item["label"]

    def confusions(manifest: pd.DataFrame, target: str) -> dict[str, Any]:
        data = labelled_dataset(manifest.reset_index(drop=True))
        limit = eval_params.max_images
        count = len(data) if limit is None else min(len(data), limit)
        matrices: dict[str, torch.Tensor] = {}
        progress = LogProgress(count, f"evaluate {stage} on {target}")
        predictions = map_in_streams(
            lambda index: predicted(data, index), range(count), setup.predict_streams
        )
        for preds, label in tqdm(
            predictions,
            total=count,
            desc=f"evaluate {stage} on {target}",
            disable=not eval_params.progress_bar,
        ):
            for mode, pred in preds.items():
                cm = confusion_matrix(pred, label, trained.network.num_classes)
                matrices[mode] = matrices.get(mode, 0) + cm
            progress.update()
        logger.info("evaluated %s on %d %s images", stage, count, target)
        return {"images": count, "confusion": {m: cm.tolist() for m, cm in matrices.items()}}

    primary = confusions(target_val_manifest, PRIMARY_TARGET)
    extra = extra_targets_manifest if extra_targets_manifest is not None else pd.DataFrame()
    targets = {
        str(name): confusions(rows, str(name))
        for name, rows in (extra.groupby("split", sort=False) if len(extra) else ())
    }
    provenance = {
        "weights_sha256": state_digest(checkpoint["model"]),
        "input_model_sha256": checkpoint.get("input_model_sha256"),
    }
    return {"model": stage, "mode": net.mode, **provenance, **primary, "targets": targets}


def build_miou_report(
    evaluation: dict[str, Any], *evaluations: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """mIoU table (one row per target, model, prediction and class subset), per-class IoU
    (one row per target, model and prediction), summary.

    ``target`` is ``target_val`` or an extra target's name. The summary is the JSON form of
    both tables (``miou_table``, ``per_class_iou``) plus the class subsets used, for tools
    that read JSON rather than CSV.
    """
    eval_params = parse(EvaluationParams, evaluation, "evaluation")
    rows = []
    per_class = []
    scored = [
        (target, result["model"], scores)
        for result in evaluations
        for target, scores in [(PRIMARY_TARGET, result), *result.get("targets", {}).items()]
    ]
    for target, model_name, scores in scored:
        for prediction, cm_list in scores["confusion"].items():
            cm = torch.tensor(cm_list, dtype=torch.int64)
            names = CITYSCAPES_CLASSES[: cm.shape[0]]
            for subset_name, subset in eval_params.class_subsets.items():
                summary = summarize(cm, names, class_subset=subset)
                row = {
                    "target": target,
                    "model": model_name,
                    "prediction": prediction,
                    "classes": subset_name,
                    "miou": summary["miou"],
                    "pixel_accuracy": summary["pixel_accuracy"],
                }
                # Small classes of this subset only, counted like the subset's mIoU.
                small = [
                    c
                    for c in eval_params.small_classes
                    if c < len(names) and (subset is None or c in subset)
                ]
                row["small_class_miou"] = (
                    summarize(cm, names, class_subset=small)["miou"] if small else math.nan
                )
                rows.append(row)
            full = summarize(cm, names)
            per_class.append(
                {"target": target, "model": model_name, "prediction": prediction, **full["iou"]}
            )
    _warn_of_absent_subsets(rows, eval_params)
    broken = broken_links(evaluations)
    table = pd.DataFrame(rows)
    per_class_table = pd.DataFrame(per_class)
    summary = {  # NaN (a class absent from the ground truth) is null in JSON
        "miou_table": table.to_dict(orient="records"),
        "per_class_iou": per_class_table.to_dict(orient="records"),
        "class_subsets": {
            name: list(CITYSCAPES_CLASSES)
            if subset is None
            else [CITYSCAPES_CLASSES[c] for c in subset]
            for name, subset in eval_params.class_subsets.items()
        },
        "broken_links": broken,
    }
    for row in rows:
        if row["prediction"] == "fused" and row["classes"] == next(iter(eval_params.class_subsets)):
            logger.info(
                "%s on %s: mIoU %.2f (small classes %.2f)",
                row["model"],
                row["target"],
                100 * row["miou"],
                100 * row["small_class_miou"],
            )
    return table, per_class_table, json_ready(summary)


def broken_links(evaluations: Sequence[dict[str, Any]]) -> list[str]:
    """The models of ``evaluations`` (in chain order: source_only, round_1, ...) whose
    checkpoint says they started from another model than the one evaluated before them,
    each with a warning: a run stopped between its rounds and re-run in part leaves one
    run's ``round_1`` beside another's ``round_2``, and a table of the two reads as one
    adaptation. Checkpoints from before the model they started from was recorded are not
    checked."""
    broken = []
    for previous, result in itertools.pairwise(evaluations):
        started_from = result.get("input_model_sha256")
        if started_from is None or started_from == previous.get("weights_sha256"):
            continue
        broken.append(str(result["model"]))
        logger.warning(
            "%s was trained from another %s than the one evaluated here (a run stopped "
            "between its rounds and re-run in part?): the table is not one adaptation; "
            "run kedro run --pipeline=uda again to train the chain from %s on",
            result["model"],
            previous["model"],
            previous["model"],
        )
    return broken


def _warn_of_absent_subsets(rows: list[dict[str, Any]], eval_params: EvaluationParams) -> None:
    """One warning per target and class subset none of whose classes its ground truth holds
    (a user's own classes, say): their mIoU is null in the reports. Once, not per model and
    prediction."""
    absent: dict[tuple[str, str], None] = {}
    for row in rows:
        if math.isnan(row["miou"]):
            absent[(row["target"], f"evaluation.class_subsets.{row['classes']}")] = None
        if math.isnan(row["small_class_miou"]):
            absent[(row["target"], "evaluation.small_classes")] = None
    for target, key in absent:
        logger.warning(
            "no class of %s occurs in the %s ground truth: its mIoU is null in the reports",
            key,
            target,
        )


def plot_per_class_iou(per_class_iou: pd.DataFrame, evaluation: dict[str, Any]) -> Figure:
    """Per-class IoU of the fused predictions on target val, models side by side, small
    classes singled out."""
    eval_params = parse(EvaluationParams, evaluation, "evaluation")
    small = [CITYSCAPES_CLASSES[c] for c in eval_params.small_classes]
    if "target" in per_class_iou.columns:
        per_class_iou = per_class_iou[per_class_iou["target"] == PRIMARY_TARGET]
    return per_class_iou_figure(per_class_iou, small)


def plot_training_curves(**histories: pd.DataFrame) -> Figure:
    """Loss terms, learning rate and pseudo-label weight of every stage, in run order."""
    return training_curves_figure(histories)


def report_pseudo_label_quality(**qualities: dict[str, Any]) -> tuple[pd.DataFrame, Figure]:
    """Table and figure of each round's pseudo-label quality, rounds in order."""
    table = pseudo_label_quality_table(qualities)
    return table, pseudo_label_quality_figure(table)


def _detail_weight(attention: torch.Tensor, prediction: torch.Tensor) -> np.ndarray:
    """One ``(H, W)`` attention map: class-wise attention is read at the predicted class."""
    if attention.shape[1] > 1:
        attention = attention.gather(1, prediction[:, None])
    return attention[0, 0].float().cpu().numpy()


@torch.no_grad()
def plot_qualitative_grid(
    target_val_manifest: pd.DataFrame,
    model: dict[str, Any],
    evaluation: dict[str, Any],
    runtime: dict[str, Any],
    **checkpoints: dict[str, Any],
) -> Figure:
    """Image, ground truth and each model's prediction, scale attention and errors.

    ``evaluation.qualitative_images`` images spread evenly over target val (so the same
    ones each run) are predicted like in :func:`evaluate_model`, the scale attention
    stitched over the same sliding windows (:func:`predict_full_image_with_attention`).
    """
    model_params = parse(ModelConfig, model, "model")
    eval_params = parse(EvaluationParams, evaluation, "evaluation")
    setup = resolve_device(parse(RuntimeParams, runtime, "runtime"))
    nets: dict[str, tuple[HRDAModel, SlidingWindows]] = {}
    for name, checkpoint in checkpoints.items():
        net, trained = model_from_checkpoint(checkpoint, name, inference=model_params.inference)
        check_compatible(trained, model_params, name, fields=("num_classes",))
        nets[name] = setup.place(net).eval(), trained.sliding_windows()
    data = labelled_dataset(target_val_manifest)
    picks = np.linspace(0, len(data) - 1, eval_params.qualitative_images).round().astype(int)

    def sample(index: int) -> QualitativeSample:
        item = data[index]  # decoded in the prediction stream
        image = normalize(item["image"].unsqueeze(0).to(setup.device))
        views = {}
        for name, (net, windows) in nets.items():
            with setup.autocast():
                logits, attention = predict_full_image_with_attention(net, image, windows)
            prediction = logits.argmax(dim=1)
            views[name] = ModelView(
                prediction=prediction[0].cpu().numpy(),
                attention=None if attention is None else _detail_weight(attention, prediction),
            )
        return QualitativeSample(
            name=str(target_val_manifest.iloc[index]["name"]),
            image=item["image"].permute(1, 2, 0).numpy(),
            label=item["label"].numpy(),
            views=views,
        )

    # Each image once (fewer images than asked), in parallel streams as evaluation predicts.
    unique = dict.fromkeys(picks.tolist())
    samples = list(map_in_streams(sample, unique, setup.predict_streams))
    logger.info("qualitative grid: %d target-val images, models %s", len(samples), list(nets))
    return qualitative_figure(samples)
