"""Several labelled targets: one mIoU row per target, model, prediction and class subset."""

from __future__ import annotations

import pandas as pd
import torch
from matplotlib.figure import Figure

from hrda_kedro.hrda.metrics import iou_per_class
from hrda_kedro.pipelines.evaluation.nodes import build_miou_report, plot_per_class_iou
from tests.pipelines.evaluation.fabricate import evaluation


def _with_targets(name: str, seed: int) -> dict:
    result = evaluation(name, seed)
    night, fog = evaluation(name, seed + 10), evaluation(name, seed + 20)
    result["targets"] = {
        "night": {"images": 3, "confusion": night["confusion"]},
        "fog": {"images": 1, "confusion": fog["confusion"]},
    }
    return result


def test_each_target_is_scored_from_its_own_confusion_matrices() -> None:
    results = [_with_targets("source_only", 0), _with_targets("round_1", 1)]
    params = {"class_subsets": {"all": None, "flat": [0, 1]}}
    table, per_class, summary = build_miou_report(params, *results)
    assert len(table) == 3 * 2 * 3 * 2  # targets x models x predictions x subsets
    assert table.columns[0] == "target"
    assert table["target"].unique().tolist() == ["target_val", "night", "fog"]
    for result in results:
        for target, scores in [("target_val", result), *result["targets"].items()]:
            cm = torch.tensor(scores["confusion"]["fused"])
            row = table[
                (table["target"] == target)
                & (table["model"] == result["model"])
                & (table["prediction"] == "fused")
                & (table["classes"] == "all")
            ]
            assert row["miou"].item() == iou_per_class(cm).mean().item()
    assert len(per_class) == 3 * 2 * 3 and pd.DataFrame(summary["miou_table"]).equals(table)


def test_results_without_extra_targets_report_target_val_only() -> None:
    table, _, _ = build_miou_report({}, evaluation("source_only", 0))
    assert set(table["target"]) == {"target_val"} and len(table) == 3


def test_per_class_figure_shows_target_val(monkeypatch) -> None:
    _, per_class, _ = build_miou_report({}, _with_targets("source_only", 0))
    seen = {}

    def fake_figure(rows: pd.DataFrame, small: list[str]) -> Figure:
        seen["rows"] = rows
        return Figure()

    monkeypatch.setattr("hrda_kedro.pipelines.evaluation.nodes.per_class_iou_figure", fake_figure)
    plot_per_class_iou(per_class, {})
    assert set(seen["rows"]["target"]) == {"target_val"} and len(seen["rows"]) == 3
