"""Our IoU, mIoU and pixel accuracy against cityscapesscripts' official pixel-level evaluation.

Ground truth is drawn as Cityscapes label ids (ignored ids included) and converted to
trainIds with our mapping; predictions are trainIds converted to label ids through the
official table. Both sides then evaluate the same PNGs: the official script through
``evaluateImgLists`` (no dataset folder layout, no instance files), ours through
``confusion_matrix`` and the evaluation pipeline's ``build_miou_report``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as official
import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import id2label, labels, trainId2label
from PIL import Image

from hrda_kedro.data.labels import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_MAPPING,
    NUM_CLASSES,
    SYNTHIA_13_CLASSES,
    SYNTHIA_16_CLASSES,
)
from hrda_kedro.hrda.metrics import confusion_matrix
from hrda_kedro.pipelines.evaluation.nodes import build_miou_report

TRAIN_TO_LABEL_ID = np.array([trainId2label[t].id for t in range(NUM_CLASSES)], dtype=np.uint8)
LABEL_IDS = np.array([lab.id for lab in labels if lab.id >= 0], dtype=np.uint8)
EVALUATED_IDS = [lab.id for lab in labels if lab.id >= 0 and not lab.ignoreInEval]
SUBSETS = {
    "all": None,
    "synthia_16": list(SYNTHIA_16_CLASSES),
    "synthia_13": list(SYNTHIA_13_CLASSES),
}


def _official_args(tmp_path: Path) -> official.CArgs:
    """The script's global settings, offline: no instance files, no JSON, no printing."""
    args = copy.copy(official.args)
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    args.exportFile = str(tmp_path / "result.json")
    return args


def _write_pairs(
    tmp_path: Path, absent: tuple[int, ...] = (), seed: int = 0
) -> tuple[list[str], list[str], list[np.ndarray], list[np.ndarray]]:
    """Label-id ground truth and predictions; trainIds in ``absent`` never occur in the GT."""
    rng = np.random.default_rng(seed)
    pred_files, gt_files, preds, gts = [], [], [], []
    for index in range(3):
        gt_ids = rng.choice(LABEL_IDS, size=(40, 60))
        gt_ids[index, :NUM_CLASSES] = TRAIN_TO_LABEL_ID  # every class present somewhere
        for train_id in absent:
            gt_ids[gt_ids == TRAIN_TO_LABEL_ID[train_id]] = 0  # unlabeled
        gt_train = CITYSCAPES_MAPPING.convert(gt_ids)
        pred_train = np.where(
            rng.random(gt_ids.shape) < 0.6, gt_train, rng.integers(0, NUM_CLASSES, gt_ids.shape)
        ).astype(np.uint8)
        pred_train[pred_train == 255] = rng.integers(0, NUM_CLASSES)
        for train_id in absent:
            pred_train[index, index] = train_id  # predicted, but absent from the GT
        gt_file = tmp_path / f"city_000000_{index:06d}_gtFine_labelIds.png"
        pred_file = tmp_path / f"city_000000_{index:06d}_pred.png"
        Image.fromarray(gt_ids.astype(np.uint8)).save(gt_file)
        Image.fromarray(TRAIN_TO_LABEL_ID[pred_train]).save(pred_file)
        pred_files.append(str(pred_file))
        gt_files.append(str(gt_file))
        preds.append(pred_train)
        gts.append(gt_train)
    return pred_files, gt_files, preds, gts


def _ours(preds: list[np.ndarray], gts: list[np.ndarray]) -> tuple:
    cm = sum(
        confusion_matrix(torch.from_numpy(p).long(), torch.from_numpy(g).long(), NUM_CLASSES)
        for p, g in zip(preds, gts, strict=True)
    )
    result = {
        "model": "m",
        "mode": "hrda",
        "images": len(preds),
        "confusion": {"fused": cm.tolist()},
    }
    table, per_class, _ = build_miou_report({"class_subsets": SUBSETS}, result)
    return table.set_index("classes"), per_class.iloc[0]


def test_the_official_table_and_our_mapping_agree() -> None:
    for label_id in LABEL_IDS:
        train_id = id2label[int(label_id)].trainId
        expected = train_id if 0 <= train_id < 255 else 255
        assert CITYSCAPES_MAPPING.convert(np.array([label_id]))[0] == expected


def test_iou_miou_and_pixel_accuracy_match_the_official_script(tmp_path: Path) -> None:
    pred_files, gt_files, preds, gts = _write_pairs(tmp_path)
    result = official.evaluateImgLists(pred_files, gt_files, _official_args(tmp_path))
    table, per_class = _ours(preds, gts)

    scores = result["classScores"]
    for name in CITYSCAPES_CLASSES:
        assert per_class[name] == pytest.approx(scores[name], abs=1e-12), name
    assert table.loc["all", "miou"] == pytest.approx(result["averageScoreClasses"], abs=1e-12)
    for subset in ("synthia_16", "synthia_13"):  # no subsets in the script: average its scores
        expected = np.mean([scores[CITYSCAPES_CLASSES[c]] for c in SUBSETS[subset]])
        assert table.loc[subset, "miou"] == pytest.approx(expected, abs=1e-12)
    matrix = np.asarray(result["confMatrix"])[np.ix_(EVALUATED_IDS, EVALUATED_IDS)]
    assert matrix.sum() == np.asarray(result["confMatrix"])[EVALUATED_IDS].sum()
    assert table.loc["all", "pixel_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())


def test_a_class_absent_from_the_ground_truth_is_left_out_of_our_mean(tmp_path: Path) -> None:
    """Documented difference: the script averages a predicted-but-absent class in as 0."""
    train = CITYSCAPES_CLASSES.index("train")
    pred_files, gt_files, preds, gts = _write_pairs(tmp_path, absent=(train,))
    result = official.evaluateImgLists(pred_files, gt_files, _official_args(tmp_path))
    table, per_class = _ours(preds, gts)

    scores = result["classScores"]
    assert scores["train"] == 0.0 and per_class["train"] == 0.0
    present = [scores[name] for name in CITYSCAPES_CLASSES if name != "train"]
    assert table.loc["all", "miou"] == pytest.approx(np.mean(present), abs=1e-12)
    assert not math.isclose(table.loc["all", "miou"], result["averageScoreClasses"])
