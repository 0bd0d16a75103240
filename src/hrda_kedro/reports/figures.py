"""Report figures: per-class IoU, training curves, pseudo-label quality, qualitative grid.

Figures are ``matplotlib.figure.Figure`` objects built without pyplot, so nodes can hand
them to ``matplotlib.MatplotlibDataset`` and no global figure state leaks between runs.
Colours follow the model order given (``C0`` for the first, usually source-only), so a
model keeps its colour across figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from hrda_kedro.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, colorize
from hrda_kedro.hrda import IGNORE_INDEX

SMALL_CLASS_SHADE = "#fde9c9"
# Error map colours, indexed by: 0 correct, 1 wrong, 2 ignored (no ground truth).
ERROR_COLORS = np.array([[0, 0, 0], [230, 40, 40], [120, 120, 120]], dtype=np.uint8)
ERROR_NAMES = ("correct", "wrong", "ignored")
# History columns that are bookkeeping, not curves.
_NOT_CURVES = {"iteration", "seconds"}


def _grouped_bars(ax: Axes, table: pd.DataFrame, columns: Sequence[str]) -> None:
    """One group per column, one bar per table row (model), coloured by row order."""
    width = 0.8 / max(len(table), 1)
    x = np.arange(len(columns))
    for k, (model, row) in enumerate(table.iterrows()):
        offset = (k - (len(table) - 1) / 2) * width
        values = row[list(columns)].to_numpy(dtype=float)
        ax.bar(x + offset, values, width, label=str(model), color=f"C{k}")
    ax.set_xticks(x, columns, rotation=50, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(columns) - 0.5)


def per_class_iou_figure(
    per_class_iou: pd.DataFrame, small_classes: Sequence[str], prediction: str = "fused"
) -> Figure:
    """IoU per class, one bar per model; the small classes are shaded and repeated.

    The right panel repeats the small classes with their mean: thin and small objects are
    where HRDA's high-resolution detail crop should help, and a 19-class mean hides them.
    Classes absent from the ground truth (NaN) get no bar.
    """
    rows = per_class_iou[per_class_iou["prediction"] == prediction].set_index("model")
    if rows.empty:
        raise ValueError(f"per_class_iou has no rows for prediction {prediction!r}")
    classes = [c for c in CITYSCAPES_CLASSES if c in rows.columns]
    small = [c for c in classes if c in small_classes]
    iou = 100 * rows[classes].astype(float)
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    all_ax, small_ax = fig.subplots(
        1, 2, width_ratios=[len(classes), len(small) + 1.5], sharey=True
    )
    _grouped_bars(all_ax, iou, classes)
    for index, name in enumerate(classes):
        if name in small:
            all_ax.axvspan(index - 0.5, index + 0.5, color=SMALL_CLASS_SHADE, zorder=0)
    for tick in all_ax.get_xticklabels():
        if tick.get_text() in small:
            tick.set_fontweight("bold")
    small_table = iou[small].assign(**{"small mean": iou[small].mean(axis=1)})
    _grouped_bars(small_ax, small_table, list(small_table.columns))
    small_ax.set_facecolor(SMALL_CLASS_SHADE)
    small_ax.set_title("small classes", fontsize=10)
    all_ax.set_ylim(0, 100)
    all_ax.set_ylabel("IoU (%)")
    all_ax.set_title(f"Per-class IoU on target val ({prediction} prediction)", fontsize=10)
    fig.legend(
        *all_ax.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=len(iou),
        frameon=False,
    )
    return fig


def _metric_order(metrics: set[str]) -> list[str]:
    """Total loss first, then source, mixed-target and MIC terms, others, weights, lr.

    Within a group the fused-output term comes before the detail-crop term.
    """
    fixed = {"loss": 0, "pseudo_weight": 5, "lr": 6}

    def key(name: str) -> tuple[int, bool, str]:
        detail_last = name.endswith("_detail")
        if name in fixed:
            return fixed[name], detail_last, name
        for rank, prefix in ((1, "source_"), (2, "mix_"), (3, "mic")):
            if name.startswith(prefix):
                return rank, detail_last, name
        return 4, detail_last, name

    return sorted(metrics, key=key)


def training_curves_figure(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """One panel per logged metric, the stages' iterations laid end to end.

    Stages run one after the other (source-only, then each round), so each is offset to
    start where the previous one ended, with a dashed line between them. Per-step losses
    are noisy: raw values are drawn faint under a running mean over a twentieth of the
    stage.
    """
    metrics = _metric_order({c for h in histories.values() for c in h.columns} - _NOT_CURVES)
    if not metrics or not any(len(h) for h in histories.values()):
        raise ValueError("the training histories hold no logged metric")
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(4.8 * ncols, 2.7 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True).ravel()
    offset = 0.0
    handles = []
    for k, (stage, history) in enumerate(histories.items()):
        if history.empty:
            continue
        x = offset + history["iteration"].to_numpy(dtype=float)
        window = max(1, len(history) // 20)
        for ax, metric in zip(axes, metrics, strict=False):
            if metric not in history.columns:
                continue
            values = history[metric].astype(float)
            ax.plot(x, values, color=f"C{k}", alpha=0.25, linewidth=0.8)
            smooth = values.rolling(window, min_periods=1).mean()
            ax.plot(x, smooth, color=f"C{k}", linewidth=1.5)
            if offset > 0:
                ax.axvline(offset, color="0.6", linestyle="--", linewidth=0.8)
        handles.append(Line2D([], [], color=f"C{k}", label=stage))
        offset = float(x.max())
    for ax, metric in zip(axes, metrics, strict=False):
        ax.set_title(metric, fontsize=10)
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    for ax in axes[(nrows - 1) * ncols : len(metrics)]:
        ax.set_xlabel("iteration (stages end to end)")
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return fig


def pseudo_label_quality_figure(table: pd.DataFrame) -> Figure:
    """Per round: summary scores (left) and IoU per class against target-train labels (right).

    ``table`` is :func:`hrda_kedro.reports.tables.pseudo_label_quality_table`'s output.
    Without target-train labels only the confident-pixel share can be shown.
    """
    rounds = table["round"].astype(str).tolist()
    fig = Figure(figsize=(15, 1.2 * len(rounds) + 3.2), layout="constrained")
    summary_ax, class_ax = fig.subplots(1, 2, width_ratios=[1, 4])
    for name, label in (
        ("miou", "mIoU"),
        ("pixel_accuracy", "pixel accuracy"),
        ("confident_pixel_share", "confident pixels"),
    ):
        summary_ax.plot(rounds, 100 * table[name].astype(float), marker="o", label=label)
    summary_ax.set_ylim(0, 100)
    summary_ax.set_ylabel("%")
    summary_ax.set_title("Pseudo-labels per round", fontsize=10)
    summary_ax.legend(fontsize=8)
    classes = [c for c in CITYSCAPES_CLASSES if c in table.columns]
    iou = 100 * table[classes].to_numpy(dtype=float)
    if np.isnan(iou).all():
        class_ax.set_axis_off()
        class_ax.text(0.5, 0.5, "no target-train labels: IoU not measured", ha="center")
        return fig
    image = class_ax.imshow(iou, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for (row, col), value in np.ndenumerate(iou):
        if not math.isnan(value):
            shade = "black" if value > 60 else "white"
            class_ax.text(
                col, row, f"{value:.0f}", ha="center", va="center", fontsize=7, color=shade
            )
    class_ax.set_xticks(range(len(classes)), classes, rotation=50, ha="right", fontsize=8)
    class_ax.set_yticks(range(len(rounds)), rounds)
    class_ax.set_title("Pseudo-label IoU per class (%) against target-train labels", fontsize=10)
    fig.colorbar(image, ax=class_ax, shrink=0.8)
    return fig


@dataclass(frozen=True)
class ModelView:
    """One model's output on one image."""

    prediction: np.ndarray  # (H, W) trainIds
    attention: np.ndarray | None  # (H, W) detail weight in [0, 1]; None without attention


@dataclass(frozen=True)
class QualitativeSample:
    """One target-val image, its ground truth and every shown model's output on it."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) trainIds, IGNORE_INDEX where unlabelled
    views: Mapping[str, ModelView]


def error_map(prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)``: black where right, red where wrong, grey where there is no label."""
    codes = np.where(label == IGNORE_INDEX, 2, np.where(prediction == label, 0, 1))
    return ERROR_COLORS[codes]


def qualitative_figure(samples: Sequence[QualitativeSample]) -> Figure:
    """A row per image: image, ground truth, then per model prediction, attention, errors.

    Labels and predictions use the Cityscapes palette; the attention is the weight of the
    high-resolution detail branch in the fusion (bright: detail, dark: context).
    """
    if not samples:
        raise ValueError("no samples to show")
    models = list(samples[0].views)
    titles = ["image", "ground truth"]
    for model in models:
        titles += [f"{model}: prediction", f"{model}: attention", f"{model}: errors"]
    height, width = samples[0].label.shape
    cell = 3.0
    fig = Figure(
        figsize=(cell * len(titles), cell * height / width * len(samples) + 1.6),
        layout="constrained",
    )
    axes = fig.subplots(len(samples), len(titles), squeeze=False)
    attention_image = None
    for row, sample in enumerate(samples):
        panels: list[np.ndarray | None] = [sample.image, colorize(sample.label)]
        for model in models:
            view = sample.views[model]
            panels += [
                colorize(view.prediction),
                view.attention,
                error_map(view.prediction, sample.label),
            ]
        for col, (ax, panel) in enumerate(zip(axes[row], panels, strict=True)):
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=8)
            if panel is None:
                ax.text(0.5, 0.5, "no attention", ha="center", va="center", fontsize=8)
            elif panel.ndim == 2:
                attention_image = ax.imshow(panel, vmin=0, vmax=1, cmap="magma")
            else:
                ax.imshow(panel, interpolation="nearest")
        axes[row, 0].set_ylabel(sample.name, fontsize=8)
    if attention_image is not None:
        fig.colorbar(attention_image, ax=axes, shrink=0.5, label="detail weight", pad=0.01)
    handles = [
        Patch(color=np.asarray(color) / 255, label=name)
        for name, color in zip(CITYSCAPES_CLASSES, CITYSCAPES_COLORS, strict=True)
    ]
    handles += [
        Patch(color=ERROR_COLORS[i] / 255, label=f"error map: {name}")
        for i, name in enumerate(ERROR_NAMES)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=11, fontsize=7, frameon=False)
    return fig
