"""Nodes of the ablation study: per-variant parameters, per-run metrics, the comparison table.

Training and evaluation reuse the ``warmup``, ``self_training`` and ``evaluation`` node
functions unchanged; only their parameter dictionaries differ per variant and seed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.hrda.metrics import iou_per_class, summarize
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.params import (
    PARAMETER_GROUPS,
    AblationOverrides,
    AblationParams,
    ParameterError,
    SelfTrainingParams,
    check_crop_fits,
    check_pretrained,
    embedded_training_sizes,
    parse,
)
from hrda_kedro.reports.tables import json_ready

logger = logging.getLogger(__name__)

# Parameter groups a variant may override, with the dataclass that validates the result.
GROUPS: dict[str, type] = {
    f.name: PARAMETER_GROUPS[f.name] for f in dataclasses.fields(AblationOverrides)
}


# What the study's evaluation reads of the ``evaluation`` group; its table has keys of its
# own for the rest (``ablations.class_subset``, ``ablations.small_classes``).
STUDY_EVALUATION_KEYS = ("predictions", "max_images", "progress_bar")
_STUDY_KEYS_INSTEAD = {
    "class_subsets": "ablations.class_subset",
    "small_classes": "ablations.small_classes",
}


def _check_study_evaluation(overrides: Mapping[str, Any], where: str) -> None:
    """Refuse ``evaluation`` overrides the study would accept and never read."""
    for key in overrides:
        if key in STUDY_EVALUATION_KEYS:
            continue
        instead = _STUDY_KEYS_INSTEAD.get(key)
        raise ParameterError(
            f"parameter {where}.evaluation.{key}: not read by the ablation study"
            + (f" (its table uses {instead})" if instead else "")
            + f"; expected one of {', '.join(STUDY_EVALUATION_KEYS)}"
        )


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``overrides`` applied.

    Mappings merge key by key, at any depth; anything else (numbers, strings, lists, null)
    replaces the base value whole, so ``context_crop: [192, 192]`` is never mixed with
    the base crop. Keys unknown to a group are caught when the result is parsed.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def variant_groups(parameters: Mapping[str, Any], variant: str) -> dict[str, dict[str, Any]]:
    """A variant's ``model``, ``warmup``, ``self_training`` and ``evaluation``, validated.

    Each is the run's group, deep-merged with ``ablations.shared`` and then with the
    variant's own overrides; errors name ``ablations.variants.<variant>.<group>``.
    """
    settings = parse(AblationParams, parameters.get("ablations"), "ablations")
    if variant not in settings.variants:
        raise ParameterError(
            f"parameter ablations.variants: no variant {variant!r}; "
            f"known: {', '.join(settings.variants)}"
        )
    spec = settings.variants[variant]
    _check_study_evaluation(settings.shared.evaluation, "ablations.shared")
    _check_study_evaluation(spec.evaluation, f"ablations.variants.{variant}")
    groups = {}
    for group, cls in GROUPS.items():
        base = parameters.get(group) or {}
        if not isinstance(base, Mapping):  # `warmup: 1000`: the group itself is wrong
            raise ParameterError(f"parameter {group}: expected a mapping, got {base!r}")
        merged = deep_merge(deep_merge(base, getattr(settings.shared, group)), getattr(spec, group))
        parsed = parse(cls, merged, f"ablations.variants.{variant}.{group}")
        if group == "self_training" and spec.adapt and parsed.rounds == 0:
            raise ParameterError(  # the graph would give it a round all the same
                f"parameter ablations.variants.{variant}.self_training.rounds: 0 for a variant "
                "that adapts; expected >= 1, or adapt: false for a source-only variant"
            )
        groups[group] = merged
    return groups


def variant_parameters(
    ablations: dict[str, Any],
    model: dict[str, Any],
    warmup: dict[str, Any],
    self_training: dict[str, Any],
    evaluation: dict[str, Any],
    runtime: dict[str, Any],
    *,
    variant: str,
    seed: int,
    groups: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    """The parameter ``groups`` of one variant and seed that its run's nodes read.

    ``runtime`` gets the seed and a work dir of its own per variant and seed, so a killed
    study resumes each run from its own in-training checkpoint and skips finished stages.
    """
    parameters = {
        "ablations": ablations,
        "model": model,
        "warmup": warmup,
        "self_training": self_training,
        "evaluation": evaluation,
    }
    merged = variant_groups(parameters, variant)
    settings = parse(AblationParams, ablations, "ablations")
    work_dir = Path(settings.work_dir) / variant / f"seed_{seed}"
    merged["runtime"] = deep_merge(runtime, {"seed": seed, "work_dir": str(work_dir)})
    hrda = merged["model"]["hrda"]
    logger.info(
        "ablation %s, seed %d: mode %s, scale %s, context crop %s, detail crop %s",
        variant,
        seed,
        hrda.get("mode"),
        hrda.get("scale"),
        hrda.get("context_crop"),
        hrda.get("detail_crop"),
    )
    return {group: merged[group] for group in groups}


def _column(class_name: str) -> str:
    return "iou_" + class_name.replace(" ", "_")


def run_metrics(
    evaluation: dict[str, Any],
    final_model: dict[str, Any],
    ablations: dict[str, Any],
    *,
    variant: str,
    seed: int,
) -> dict[str, Any]:
    """One row of the table: the fused prediction's mIoU and small-class IoU on target
    val, and its mIoU on each extra target (``miou_<target>``, the columns of the paper's
    domain-generalization table).

    The crop and mode columns are read from the evaluated checkpoint, so the table shows
    what each model was really trained with. Small classes absent from the ground truth
    get NaN, and are left out of the small-class mean.
    """
    settings = parse(AblationParams, ablations, "ablations")
    cm = torch.tensor(evaluation["confusion"]["fused"], dtype=torch.int64)
    names = CITYSCAPES_CLASSES[: cm.shape[0]]
    small = [c for c in settings.small_classes if c < len(names)]
    ious = iou_per_class(cm)
    present = cm.sum(dim=1) > 0
    hrda = final_model["model_params"]["hrda"]
    row = {
        "variant": variant,
        "seed": seed,
        "model": final_model["stage"],
        "mode": hrda["mode"],
        "scale": hrda["scale"],
        "context_crop": "x".join(map(str, hrda["context_crop"])),
        "detail_crop": "x".join(map(str, hrda["detail_crop"])),
        "images": evaluation["images"],
        "miou": summarize(cm, names, settings.class_subset)["miou"],
        "small_class_miou": summarize(cm, names, small)["miou"],
        **{_column(names[c]): float(ious[c]) if present[c] else math.nan for c in small},
        **{
            f"miou_{target}": _fused_miou(result, settings.class_subset)
            for target, result in evaluation.get("targets", {}).items()
        },
    }
    return json_ready(row)


def _fused_miou(result: dict[str, Any], class_subset: list[int] | None) -> float:
    """The fused prediction's mIoU in one target's evaluation result."""
    cm = torch.tensor(result["confusion"]["fused"], dtype=torch.int64)
    return summarize(cm, CITYSCAPES_CLASSES[: cm.shape[0]], class_subset)["miou"]


def build_ablation_table(
    ablations: dict[str, Any], *metrics: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every variant x seed, each variant followed by its mean over seeds (``seed: mean``).

    The JSON summary adds the standard deviation over seeds, to judge a difference of
    means against the seed-to-seed spread.
    """
    settings = parse(AblationParams, ablations, "ablations")
    runs = pd.DataFrame(list(metrics))
    scores = [
        "miou",
        "small_class_miou",
        *[c for c in runs.columns if c.startswith(("iou_", "miou_"))],
    ]
    runs[scores] = runs[scores].astype(float)  # null (absent class) -> NaN
    rows = []
    summary: dict[str, Any] = {}
    for variant, group in runs.groupby("variant", sort=False):
        rows.extend(group.to_dict(orient="records"))
        mean = {**group.iloc[0].to_dict(), **group[scores].mean().to_dict(), "seed": "mean"}
        rows.append(mean)
        summary[variant] = {
            "seeds": group["seed"].tolist(),
            **{f"{s}_mean": float(group[s].mean()) for s in scores},
            **{f"{s}_std": float(group[s].std(ddof=0)) for s in scores},
        }
        logger.info(
            "%-22s mIoU %5.1f +- %4.1f, small classes %5.1f +- %4.1f (%d seeds)",
            variant,
            100 * group["miou"].mean(),
            100 * group["miou"].std(ddof=0),
            100 * group["small_class_miou"].mean(),
            100 * group["small_class_miou"].std(ddof=0),
            len(group),
        )
    table = pd.DataFrame(rows, columns=list(runs.columns))
    return table, json_ready(
        {
            "small_classes": [CITYSCAPES_CLASSES[c] for c in settings.small_classes],
            "class_subset": settings.class_subset,
            "variants": summary,
            "runs": runs.to_dict("records"),
        }
    )


def build_per_class_table(
    ablations: dict[str, Any], *evaluations: dict[str, Any], runs: list[tuple[str, int]]
) -> pd.DataFrame:
    """Per-class IoU (%) of every variant in the paper's layout (Table 1: one column per
    class, then mIoU): the mean over seeds and, below it, the standard deviation.

    ``evaluations`` are the runs' confusion matrices, in the order of ``runs`` (variant,
    seed). Classes absent from the ground truth are NaN and left out of the mIoU, as in
    the comparison table.
    """
    settings = parse(AblationParams, ablations, "ablations")
    rows = []
    for (variant, seed), evaluation in zip(runs, evaluations, strict=True):
        cm = torch.tensor(evaluation["confusion"]["fused"], dtype=torch.int64)
        names = CITYSCAPES_CLASSES[: cm.shape[0]]
        present = cm.sum(dim=1) > 0
        ious = torch.where(present, iou_per_class(cm), torch.nan)
        rows.append(
            {
                "variant": variant,
                "seed": seed,
                **{name: 100 * float(iou) for name, iou in zip(names, ious, strict=True)},
                "miou": 100 * summarize(cm, names, settings.class_subset)["miou"],
            }
        )
    per_run = pd.DataFrame(rows)
    scores = [c for c in per_run.columns if c not in ("variant", "seed")]
    grouped = per_run.groupby("variant", sort=False)[scores]
    table = pd.concat(
        [grouped.mean().assign(statistic="mean"), grouped.std(ddof=0).assign(statistic="std")]
    )
    table["seeds"] = per_run.groupby("variant", sort=False)["seed"].count()
    order = {variant: i for i, variant in enumerate(dict.fromkeys(per_run["variant"]))}
    table = table.reset_index().sort_values(
        ["variant", "statistic"], key=lambda c: c.map(order) if c.name == "variant" else c
    )
    return table[["variant", "statistic", "seeds", *scores]].round(2).reset_index(drop=True)


def validate_ablations(parameters: Mapping[str, Any]) -> None:
    """Check ``ablations`` and every variant's merged parameters; errors name the key.

    Called by the run-start hook, so a bad override stops any run before its first node.
    """
    settings = parse(AblationParams, parameters.get("ablations"), "ablations")
    for variant in settings.variants:
        variant_groups(parameters, variant)


def check_variant_weights(parameters: Mapping[str, Any]) -> None:
    """The pretrained weights each variant loads must be on this machine before the study
    trains anything: a variant's own file was first read by its warmup node, hours into a
    study. Errors name the key that set the file (the variant's, the study's or the run's).
    Called by the run-start hook with the other file checks, after the schema's."""
    settings = parse(AblationParams, parameters.get("ablations"), "ablations")
    for variant in settings.variants:
        _check_weights(settings, variant, variant_groups(parameters, variant))


def _check_weights(
    settings: AblationParams, variant: str, groups: Mapping[str, dict[str, Any]]
) -> None:
    """:func:`check_variant_weights` for one variant."""
    model = parse(ModelConfig, groups["model"], f"ablations.variants.{variant}.model")
    training = parse(SelfTrainingParams, groups["self_training"], "self_training")
    distance = training.feature_distance
    weights = [("model", "network", model.network.pretrained)]
    if distance.enabled:
        weights.append(("self_training", "feature_distance", distance.pretrained))
    for group, section, location in weights:
        owner = _setter(settings, variant, group, section)
        check_pretrained(location, model.network.encoder, f"{owner}{group}.{section}")


def check_variant_crops(parameters: Mapping[str, Any]) -> None:
    """Each variant's context crop fits in the embedded benchmark's training images before
    the study trains anything: naive HR's larger crop was refused by its own warmup node,
    after other variants had trained, under the run's key ``model.hrda.context_crop``."""
    sizes = embedded_training_sizes(parameters)
    if not sizes:
        return
    settings = parse(AblationParams, parameters.get("ablations"), "ablations")
    for variant in settings.variants:
        groups = variant_groups(parameters, variant)
        model = parse(ModelConfig, groups["model"], f"ablations.variants.{variant}.model")
        owner = _setter(settings, variant, "model", "hrda", "context_crop")
        check_crop_fits(model.hrda.context_crop, sizes, f"{owner}model.hrda.context_crop")


def _setter(
    settings: AblationParams, variant: str, group: str, section: str, key: str = "pretrained"
) -> str:
    """The key prefix whose ``<group>.<section>.<key>`` a variant's value comes from."""
    for prefix, overrides in (
        (f"ablations.variants.{variant}.", settings.variants[variant]),
        ("ablations.shared.", settings.shared),
    ):
        if key in (getattr(overrides, group).get(section) or {}):
            return prefix
    return ""
