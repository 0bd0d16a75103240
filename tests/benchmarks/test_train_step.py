"""benchmarks/train_step.py: the ``_nooverlap`` row times the teacher HRDA's official
``nooverlap`` ablation runs, and its ratios are reported against the same run's rows."""

from __future__ import annotations

from tests.benchmarks import load_script

TINY = {"encoder": "mit-nano", "embed_dim": 16, "scale": 2, "detail": (32, 32)}


def test_the_nooverlap_row_builds_hrda_with_edge_to_edge_teacher_windows() -> None:
    train_step = load_script("train_step")
    plain = train_step._model(TINY, "uda_hrda")
    tiled = train_step._model(TINY, "uda_hrda_nooverlap")
    assert plain.mode == tiled.mode == "hrda" and plain.scale == tiled.scale == 2
    assert plain.hr_slide_overlapping and not tiled.hr_slide_overlapping
    assert tiled.detail_stride == (32, 32) and plain.detail_stride == (16, 16)


def test_the_nooverlap_row_is_compared_with_naive_hr_and_with_hrda() -> None:
    train_step = load_script("train_step")
    rows = [
        {"precision": "fp32", "variant": variant, "teacher_thread": "on", "median_s": time_s,
         "peak_mb": 100.0, "step_mem_mb": memory}
        for variant, time_s, memory in (
            ("uda_naive_hr", 1.0, 200.0),
            ("uda_hrda", 0.8, 120.0),
            ("uda_hrda_nooverlap", 0.6, 110.0),
        )
    ]  # fmt: skip
    notes = train_step._ratio_notes(rows)
    assert (
        "fp32 uda_hrda_nooverlap / uda_naive_hr: time 0.60x, peak 1.00x, step memory 0.55x "
        "(goal <= 0.65x)" in notes
    )
    assert any(n.startswith("fp32 uda_hrda_nooverlap / uda_hrda (edge-to-edge") for n in notes)
    assert any(n.startswith("fp32 uda_hrda / uda_naive_hr: time 0.80x") for n in notes)
