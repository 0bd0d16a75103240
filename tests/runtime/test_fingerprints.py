"""What a stage's fingerprint holds: the settings that shape its weights, and only those."""

from __future__ import annotations

import pytest

from hrda_kedro.runtime.fingerprints import fingerprint, trained_settings

MODEL = {
    "network": {"encoder": "mit-nano"},
    "hrda": {"scale": 2},
    "inference": {"window": [64, 64], "window_batch": 4, "window_weights": "uniform"},
}
STAGE = {"iterations": 6, "optimizer": {"lr": 6e-4}, "log_every": 10, "rounds": 2}


def _print(model=MODEL, stage=STAGE, reads_inference=False) -> str:
    return fingerprint(parameters=trained_settings(model, stage, reads_inference=reads_inference))


@pytest.mark.parametrize(
    ("group", "key", "value"),
    [
        ("stage", "log_every", 1),
        ("stage", "checkpoint_every", 1),
        ("stage", "cache_images", False),
        ("stage", "decode_threads", 1),
        ("stage", "rounds", 3),
        ("inference", "window_weights", "tapered"),
        ("inference", "window_batch", 1),
        ("inference", "window", [32, 32]),
    ],
)
def test_bookkeeping_and_test_time_settings_leave_the_fingerprint(group, key, value) -> None:
    model = {**MODEL, "inference": {**MODEL["inference"]}}
    stage = dict(STAGE)
    (stage if group == "stage" else model["inference"])[key] = value
    assert _print(model, stage) == _print()


@pytest.mark.parametrize(
    ("model", "stage"),
    [
        (MODEL, {**STAGE, "iterations": 7}),
        (MODEL, {**STAGE, "optimizer": {"lr": 1e-3}}),
        ({**MODEL, "hrda": {"scale": 4}}, STAGE),
        ({**MODEL, "network": {"encoder": "mit-b0"}}, STAGE),
    ],
)
def test_settings_that_shape_the_weights_change_it(model, stage) -> None:
    assert _print(model, stage) != _print()


def test_offline_pseudo_labels_count_the_windows_they_were_predicted_with() -> None:
    tapered = {**MODEL, "inference": {**MODEL["inference"], "window_weights": "tapered"}}
    rebatched = {**MODEL, "inference": {**MODEL["inference"], "window_batch": 1}}
    assert _print(tapered, reads_inference=True) != _print(reads_inference=True)
    assert _print(rebatched, reads_inference=True) == _print(reads_inference=True)


def test_the_hr_sliding_pattern_counts_for_self_training_only() -> None:
    """The warmup never slides windows in training: changing how test time slides the
    detail windows retrained a finished warmup from iteration 0. Self-training's teacher
    makes its pseudo-labels with them."""
    edge_to_edge = {**MODEL, "hrda": {**MODEL["hrda"], "hr_slide_overlapping": False}}
    overlapping = {**MODEL, "hrda": {**MODEL["hrda"], "hr_slide_overlapping": True}}

    def warmup(model: dict) -> str:
        return fingerprint(parameters=trained_settings(
            model, STAGE, reads_inference=False, slides_windows=False
        ))  # fmt: skip

    assert warmup(edge_to_edge) == warmup(overlapping) == warmup(MODEL)
    assert warmup({**MODEL, "hrda": {"scale": 4}}) != warmup(MODEL)
    assert _print(edge_to_edge) != _print(overlapping)
