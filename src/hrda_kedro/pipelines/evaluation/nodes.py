"""Nodes of the evaluation pipeline."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.inference import predict_full_image
from hrda_kedro.hrda.metrics import confusion_matrix, summarize
from hrda_kedro.params import EvaluationParams, ModelParams, RuntimeParams, parse
from hrda_kedro.runtime import labelled_dataset, model_from_checkpoint, resolve_device

logger = logging.getLogger(__name__)

# Prediction modes: the model's own fused output, its LR context branch, its HR detail branch.
PREDICTIONS = {"fused": None, "context": "lr_only", "detail": "hr_only"}


@torch.no_grad()
def evaluate_model(
    checkpoint: dict[str, Any],
    target_val_manifest: pd.DataFrame,
    model: dict[str, Any],
    evaluation: dict[str, Any],
    runtime: dict[str, Any],
) -> dict[str, Any]:
    """Confusion matrices of one model on target val, for each prediction mode.

    The student is evaluated (not the EMA teacher), as in the paper.
    """
    model_params = parse(ModelParams, model, "model")
    eval_params = parse(EvaluationParams, evaluation, "evaluation")
    setup = resolve_device(parse(RuntimeParams, runtime, "runtime"))
    net, trained = model_from_checkpoint(checkpoint, str(checkpoint.get("stage")))
    net = net.to(setup.device).eval()
    data = labelled_dataset(target_val_manifest)
    count = len(data) if eval_params.max_images is None else min(len(data), eval_params.max_images)
    num_classes = trained.network.num_classes
    trained_mode = net.mode
    modes = [m for m in eval_params.predictions if PREDICTIONS[m] != trained_mode or m == "fused"]
    matrices = {m: torch.zeros(num_classes, num_classes, dtype=torch.int64) for m in modes}
    stage = str(checkpoint.get("stage"))
    for index in tqdm(range(count), desc=f"evaluate {stage}", disable=not eval_params.progress_bar):
        item = data[index]
        image = normalize(item["image"].unsqueeze(0).to(setup.device))
        for mode in modes:
            net.mode = PREDICTIONS[mode] or trained_mode
            with setup.autocast():
                logits = predict_full_image(
                    net,
                    image,
                    model_params.window,
                    model_params.stride,
                    batch_size=model_params.inference.window_batch,
                )
            pred = logits.argmax(dim=1)[0].cpu()
            matrices[mode] += confusion_matrix(pred, item["label"], num_classes)
        net.mode = trained_mode
    logger.info("evaluated %s on %d target-val images", stage, count)
    return {
        "model": stage,
        "mode": trained_mode,
        "images": count,
        "confusion": {m: cm.tolist() for m, cm in matrices.items()},
    }


def build_miou_report(
    evaluation: dict[str, Any], *evaluations: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """mIoU table (one row per model, prediction and class subset), per-class IoU, summary."""
    eval_params = parse(EvaluationParams, evaluation, "evaluation")
    rows = []
    per_class = []
    for result in evaluations:
        for prediction, cm_list in result["confusion"].items():
            cm = torch.tensor(cm_list, dtype=torch.int64)
            names = CITYSCAPES_CLASSES[: cm.shape[0]]
            for subset_name, subset in eval_params.class_subsets.items():
                summary = summarize(cm, names, class_subset=subset)
                row = {
                    "model": result["model"],
                    "prediction": prediction,
                    "classes": subset_name,
                    "miou": summary["miou"],
                    "pixel_accuracy": summary["pixel_accuracy"],
                }
                small = [
                    summary["iou"][names[c]] for c in eval_params.small_classes if c < len(names)
                ]
                row["small_class_miou"] = float(pd.Series(small, dtype=float).mean())
                rows.append(row)
            full = summarize(cm, names)
            per_class.append({"model": result["model"], "prediction": prediction, **full["iou"]})
    table = pd.DataFrame(rows)
    per_class_table = pd.DataFrame(per_class)
    summary = {
        "rows": table.to_dict(orient="records"),
        "per_class_iou": per_class_table.to_dict(orient="records"),
    }
    for row in rows:
        if row["prediction"] == "fused" and row["classes"] == next(iter(eval_params.class_subsets)):
            logger.info(
                "%s: mIoU %.2f (small classes %.2f)",
                row["model"],
                100 * row["miou"],
                100 * row["small_class_miou"],
            )
    return table, per_class_table, summary
