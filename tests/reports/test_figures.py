"""Report figures: what each panel shows, checked on the figure objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from hrda_kedro.data.labels import CITYSCAPES_CLASSES, colorize
from hrda_kedro.reports.figures import (
    ERROR_COLORS,
    ModelView,
    QualitativeSample,
    error_map,
    per_class_iou_figure,
    pseudo_label_quality_figure,
    qualitative_figure,
    training_curves_figure,
)
from hrda_kedro.reports.tables import pseudo_label_quality_table
from tests.pipelines.evaluation.fabricate import history, pseudo_label_quality

SMALL = ("pole", "traffic light", "traffic sign", "person", "rider")
MODELS = ("source_only", "round_1")


def _per_class(prediction: str = "fused") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {
            "model": m,
            "prediction": prediction,
            **dict(zip(CITYSCAPES_CLASSES, rng.random(19), strict=True)),
        }
        for m in MODELS
    ]
    return pd.DataFrame(rows)


def _bar_heights(ax) -> list[float]:
    return [p.get_height() for p in ax.patches if isinstance(p, Rectangle) and p.get_width() < 1]


def test_per_class_iou_figure_singles_out_the_small_classes() -> None:
    table = _per_class()
    figure = per_class_iou_figure(table, SMALL)
    all_ax, small_ax = figure.axes
    heights = _bar_heights(all_ax)
    assert len(heights) == 19 * len(MODELS)
    assert heights[:19] == pytest.approx(
        100 * table.iloc[0][list(CITYSCAPES_CLASSES)].to_numpy(float)
    )
    bold = {t.get_text() for t in all_ax.get_xticklabels() if t.get_fontweight() == "bold"}
    assert bold == set(SMALL)
    assert [t.get_text() for t in small_ax.get_xticklabels()] == [*SMALL, "small mean"]
    small_mean = 100 * table.iloc[1][list(SMALL)].mean()
    assert _bar_heights(small_ax)[-1] == pytest.approx(small_mean)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == list(MODELS)


def test_per_class_iou_figure_needs_rows_of_the_prediction() -> None:
    with pytest.raises(ValueError, match="no rows for prediction 'fused'"):
        per_class_iou_figure(_per_class("context"), SMALL)


def test_training_curves_put_stages_end_to_end() -> None:
    histories = {"source_only": history("source_only", 10), "round_1": history("round_1", 5)}
    figure = training_curves_figure(histories)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == [
        "loss", "source_fused", "source_detail", "mix_fused", "mix_detail", "pseudo_weight", "lr",
    ]  # fmt: skip
    loss_ax = figure.axes[0]
    by_colour = {
        c: [ln for ln in loss_ax.lines if ln.get_color() == c] for c in ("C0", "C1", "0.6")
    }
    assert list(by_colour["C0"][0].get_xdata()) == list(range(1, 11))
    assert list(by_colour["C1"][0].get_xdata()) == list(range(11, 16))
    assert list(by_colour["0.6"][0].get_xdata()) == [10, 10]  # the dashed stage boundary
    mix_ax = figure.axes[3]
    assert {line.get_color() for line in mix_ax.lines} == {"C1", "0.6"}  # rounds only
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["source_only", "round_1"]


def test_training_curves_need_a_metric() -> None:
    with pytest.raises(ValueError, match="no logged metric"):
        training_curves_figure({"source_only": pd.DataFrame(columns=["iteration", "seconds"])})


def test_pseudo_label_quality_table_and_figure() -> None:
    table = pseudo_label_quality_table(
        {"round_1": pseudo_label_quality(0), "round_2": {"images": 4, "confident_pixel_share": 0.5}}
    )
    assert table["round"].tolist() == ["round_1", "round_2"]
    assert table.loc[0, "road"] == pseudo_label_quality(0)["iou"]["road"]
    assert table.loc[1, ["miou", "pixel_accuracy", "road"]].isna().all()
    figure = pseudo_label_quality_figure(table)
    heatmap = figure.axes[1].images[0].get_array()
    assert heatmap.shape == (2, 19) and heatmap.mask[1].all() and not heatmap.mask[0].any()


def test_pseudo_label_quality_figure_without_labels_says_so() -> None:
    table = pseudo_label_quality_table({"round_1": {"images": 2, "confident_pixel_share": 0.4}})
    figure = pseudo_label_quality_figure(table)
    assert "no target-train labels" in figure.axes[1].texts[0].get_text()


def test_error_map_colours_right_wrong_and_ignored() -> None:
    label = np.array([[0, 1, 255]])
    prediction = np.array([[0, 2, 3]])
    assert np.array_equal(error_map(prediction, label), ERROR_COLORS[[[0, 1, 2]]])


def test_qualitative_figure_rows_and_columns() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, (8, 16))
    views = {
        "source_only": ModelView(label, rng.random((8, 16))),
        "round_1": ModelView(np.zeros_like(label), None),
    }
    sample = QualitativeSample("a", rng.integers(0, 256, (8, 16, 3), dtype=np.uint8), label, views)
    figure = qualitative_figure([sample, sample])
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * (2 + 3 * 2)
    assert [ax.get_title() for ax in panels[:8]] == [
        "image", "ground truth",
        "source_only: prediction", "source_only: attention", "source_only: errors",
        "round_1: prediction", "round_1: attention", "round_1: errors",
    ]  # fmt: skip
    assert np.array_equal(panels[1].images[0].get_array(), colorize(label))
    assert panels[3].images[0].get_clim() == (0, 1)
    assert np.array_equal(panels[4].images[0].get_array(), ERROR_COLORS[np.zeros_like(label)])
    assert not panels[6].images and panels[6].texts[0].get_text() == "no attention"
    assert panels[0].get_ylabel() == "a"
