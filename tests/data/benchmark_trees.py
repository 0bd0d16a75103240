"""Tiny file trees in the layouts of ACDC, Dark Zurich, BDD100K and Mapillary Vistas v1.2.

Labels hold every class (trainIds, or Mapillary ids that map to them) and some ignore, so
that tests and whole-pipeline runs see the real layouts, suffixes and label encodings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrda_kedro.data.labels import MAPILLARY_ID_TO_TRAIN_ID
from tests.data.helpers import write_index, write_rgb


def trainid_label(height: int, width: int, seed: int) -> np.ndarray:
    """Vertical bands of trainIds 0-18 and 255, shifted per image."""
    values = np.array([*range(19), 255])
    columns = (np.arange(width) * len(values) // width + seed) % len(values)
    return np.broadcast_to(values[columns], (height, width)).copy()


# Mapillary ids: every mapped id once, then unmapped ones (ignored: 23 crosswalk, 65 unlabeled).
MAPILLARY_IDS = np.array([*sorted(MAPILLARY_ID_TO_TRAIN_ID), 23, 65])


def mapillary_label(height: int, width: int) -> np.ndarray:
    columns = np.arange(width) * len(MAPILLARY_IDS) // width
    return np.broadcast_to(MAPILLARY_IDS[columns], (height, width)).copy()


def acdc_tree(
    root: Path,
    subset: str,
    conditions: tuple[str, ...] = ("fog", "night", "rain", "snow"),
    per_condition: int = 2,
    size: tuple[int, int] = (6, 10),
) -> Path:
    """``rgb_anon/<condition>/<subset>/<sequence>/*_rgb_anon.png`` and ``gt/...`` siblings."""
    for c, condition in enumerate(conditions):
        for i in range(per_condition):
            stem = f"GOPR04{c}{i}_frame_0000{i}"
            seq = f"GOPR04{c}{i}"
            write_rgb(
                root / "rgb_anon" / condition / subset / seq / f"{stem}_rgb_anon.png", *size, seed=i
            )
            gt = root / "gt" / condition / subset / seq
            write_index(gt / f"{stem}_gt_labelTrainIds.png", trainid_label(*size, seed=c + i))
            write_index(gt / f"{stem}_gt_labelIds.png", np.full(size, 7))  # not read
        # ACDC ships reference (clear-weather) images next to each split: never read.
        write_rgb(root / "rgb_anon" / condition / f"{subset}_ref" / "ref" / "x_rgb_ref_anon.png")
    return root


def dark_zurich_tree(root: Path, subset: str, labels: bool, count: int = 2, size=(6, 10)) -> Path:
    """``rgb_anon/<subset>/night/<sequence>/*_rgb_anon.png`` (+ ``gt`` for val), plus day images."""
    for i in range(count):
        stem = f"GOPR0356_frame_00{i:04d}"
        write_rgb(
            root / "rgb_anon" / subset / "night" / "GOPR0356" / f"{stem}_rgb_anon.png",
            *size,
            seed=i,
        )
        if labels:
            gt = root / "gt" / subset / "night" / "GOPR0356"
            write_index(gt / f"{stem}_gt_labelTrainIds.png", trainid_label(*size, seed=i))
        # Day and twilight images are not part of HRDA's target: never read.
        write_rgb(root / "rgb_anon" / subset / "day" / "GOPR0351" / f"d{i}_rgb_anon.png", *size)
    return root


def bdd100k_tree(root: Path, subset: str, count: int = 2, size=(6, 10)) -> Path:
    """``images/10k/<subset>/*.jpg`` and ``labels/sem_seg/masks/<subset>/*.png`` (trainIds)."""
    for i in range(count):
        name = f"7d2f7975-e0c1c5a{i}"
        write_rgb(root / "images" / "10k" / subset / f"{name}.jpg", *size, seed=i)
        masks = root / "labels" / "sem_seg" / "masks" / subset
        write_index(masks / f"{name}.png", trainid_label(*size, seed=i))
    return root


def mapillary_tree(root: Path, subset: str, sizes=((6, 27), (8, 40))) -> Path:
    """``<subset>/images/*.jpg`` and ``<subset>/labels/*.png`` (palette PNGs of v1.2 ids)."""
    for i, size in enumerate(sizes):
        name = f"__CRyFzoDOXn6unQ6a3DnQ{i}"
        write_rgb(root / subset / "images" / f"{name}.jpg", *size, seed=i)
        write_index(root / subset / "labels" / f"{name}.png", mapillary_label(*size), mode="P")
    return root
