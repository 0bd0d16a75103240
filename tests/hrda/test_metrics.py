"""Confusion matrix, IoU and summaries against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from hrda_kedro.hrda.metrics import confusion_matrix, iou_per_class, summarize

NAMES = ["road", "car", "sky", "pole"]


def example() -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.tensor([[0, 0, 0, 1], [1, 2, 255, 255], [2, 2, 0, 1]])
    pred = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 3], [2, 2, 0, 1]])
    return pred, target


# rows = ground truth, columns = prediction (the two ignored pixels are skipped)
EXPECTED_CM = torch.tensor(
    [
        [3, 1, 0, 0],  # road: 3 right, 1 called car
        [0, 2, 1, 0],  # car: 2 right, 1 called sky
        [0, 0, 3, 0],  # sky: 3 right
        [0, 0, 0, 0],  # pole: absent, never predicted on a valid pixel
    ]
)


def test_confusion_matrix_matches_the_hand_count() -> None:
    pred, target = example()
    cm = confusion_matrix(pred, target, 4)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, EXPECTED_CM)


def test_confusion_matrices_add_over_batches() -> None:
    pred, target = example()
    batch = confusion_matrix(torch.stack([pred, pred]), torch.stack([target, target]), 4)
    assert torch.equal(batch, 2 * EXPECTED_CM)


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        ([0, 4], [0, 1], "pred holds values"),
        ([0, 1], [7, 1], "target holds values"),
        ([0, 1], [-1, 1], "target holds values"),
        ([0, 1, 2], [0, 1], "differ in shape"),
    ],
)
def test_confusion_matrix_rejects_bad_values(pred: list, target: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        confusion_matrix(torch.tensor(pred), torch.tensor(target), 4)


def test_iou_per_class_by_hand() -> None:
    iou = iou_per_class(EXPECTED_CM)
    # road 3 / (4 + 3 - 3); car 2 / (3 + 3 - 2); sky 3 / (3 + 4 - 3); pole 0 / 0
    torch.testing.assert_close(iou[:3], torch.tensor([3 / 4, 2 / 4, 3 / 4], dtype=torch.float64))
    assert math.isnan(iou[3])


def test_summarize_ignores_classes_absent_from_the_ground_truth() -> None:
    cm = EXPECTED_CM.clone()
    cm[0, 3] = 1  # a road pixel predicted as pole: pole IoU 0 but pole is absent from the gt
    summary = summarize(cm, NAMES)
    assert summary["iou"]["pole"] == 0.0
    assert summary["miou"] == pytest.approx((3 / 5 + 2 / 4 + 3 / 4) / 3)
    assert summary["pixel_accuracy"] == pytest.approx(8 / 11)


def test_summarize_over_a_class_subset_by_name_or_index() -> None:
    by_name = summarize(EXPECTED_CM, NAMES, ["car", "sky"])
    assert by_name["miou"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    assert set(by_name["iou"]) == {"car", "sky"}
    assert summarize(EXPECTED_CM, NAMES, [1, 2]) == by_name
    assert by_name["pixel_accuracy"] == pytest.approx(8 / 10)  # over all valid pixels


def test_summarize_without_any_present_class_is_nan() -> None:
    summary = summarize(torch.zeros(4, 4, dtype=torch.long), NAMES)
    assert math.isnan(summary["miou"]) and math.isnan(summary["pixel_accuracy"])
    assert math.isnan(summarize(EXPECTED_CM, NAMES, ["pole"])["miou"])


@pytest.mark.parametrize(("subset", "message"), [(["tree"], "'tree'"), ([4], "4 is not")])
def test_summarize_rejects_unknown_classes(subset: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(EXPECTED_CM, NAMES, subset)


def test_summarize_checks_the_matrix_size() -> None:
    with pytest.raises(ValueError, match="3 class names"):
        summarize(EXPECTED_CM, NAMES[:3])
