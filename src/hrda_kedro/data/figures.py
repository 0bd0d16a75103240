"""The ingestion samples figure: images of both domains above their labels.

Looking at a few samples of each split is the quickest check that the right folders were
ingested, the labels line up and the mapping is right (wrong mappings show as wrong colours
in the Cityscapes palette).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from hrda_kedro.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, colorize
from hrda_kedro.data.validation import read_image


def samples_figure(manifests: dict[str, pd.DataFrame], per_split: int) -> Figure:
    """One image row and one label row per manifest (titled by its key), ``per_split`` columns."""
    fig = Figure(figsize=(3.4 * per_split, 3.6 * len(manifests) + 0.9), layout="constrained")
    axes = fig.subplots(2 * len(manifests), per_split, squeeze=False)
    for row, (title, manifest) in enumerate(manifests.items()):
        picks = np.unique(np.linspace(0, len(manifest) - 1, per_split).round().astype(int))
        for col in range(per_split):
            image_ax, label_ax = axes[2 * row, col], axes[2 * row + 1, col]
            image_ax.set_axis_off()
            label_ax.set_axis_off()
            if col >= len(picks):
                continue
            sample = manifest.iloc[int(picks[col])]
            image_ax.imshow(read_image(sample["image_path"]))
            image_ax.set_title(f"{title}: {sample['name']}", fontsize=8)
            label_path = sample["label_path"]
            if isinstance(label_path, str) and label_path:
                with Image.open(label_path) as label:
                    label_ax.imshow(colorize(np.asarray(label)), interpolation="nearest")
    handles = [
        Patch(color=np.asarray(color) / 255, label=name)
        for name, color in zip(CITYSCAPES_CLASSES, CITYSCAPES_COLORS, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=10, fontsize=7, frameon=False)
    return fig
