"""evaluate_model in prediction streams, build_miou_report's class subsets and the shipped
evaluation parameters."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.config import OmegaConfigLoader

from hrda_kedro.data.labels import (
    CITYSCAPES_CLASSES,
    SMALL_OBJECT_CLASSES,
    SYNTHIA_13_CLASSES,
    SYNTHIA_16_CLASSES,
)
from hrda_kedro.hrda.metrics import iou_per_class
from hrda_kedro.params import EvaluationParams, parse
from hrda_kedro.pipelines.evaluation import nodes
from hrda_kedro.pipelines.evaluation.nodes import build_miou_report, evaluate_model
from hrda_kedro.run_config import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT
from tests.pipelines.evaluation.fabricate import (
    EVALUATION,
    MODEL,
    RUN_MODEL,
    RUN_WINDOWS,
    checkpoint,
    evaluation,
    val_manifest,
)


@pytest.mark.parametrize("streams", [2, 3])
def test_evaluation_in_streams_counts_what_a_one_thread_loop_counts(
    tmp_path: Path, one_thread: None, streams: int
) -> None:
    manifest = val_manifest(tmp_path, count=5)
    model = checkpoint("round_1", 0)

    def evaluated(predict_streams: int) -> dict:
        runtime = {"device": "cpu", "predict_streams": predict_streams}
        return evaluate_model(model, manifest, MODEL, EVALUATION, runtime)

    streamed, loop = evaluated(streams), evaluated(1)
    assert streamed == loop
    assert streamed["images"] == 5 and set(streamed["confusion"]) == {"fused", "context", "detail"}


def test_a_subset_absent_from_the_ground_truth_is_one_warning_naming_it(caplog) -> None:
    """A user's own classes left the default small classes absent: 6 to 24 identical
    warnings that named neither the subset nor the target."""
    cm = np.zeros((19, 19), dtype=int)
    cm[0, 0], cm[1, 1] = 50, 40  # road and sidewalk only
    result = {"model": "m", "confusion": {"fused": cm.tolist(), "context": cm.tolist()}}
    with caplog.at_level("WARNING", logger="hrda_kedro"):
        table, _, _ = build_miou_report(EVALUATION, result, {**result, "model": "n"})
    assert table["small_class_miou"].map(math.isnan).all()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "no class of evaluation.small_classes occurs in the target_val ground truth: its mIoU "
        "is null in the reports"
    ]


def test_the_qualitative_grid_predicts_in_streams_what_a_loop_predicts(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The figure's images once ignored ``runtime.predict_streams``: same images, same
    order, same predictions and attention with 2 streams as in a plain loop."""
    shown, threads = [], []
    monkeypatch.setattr(nodes, "qualitative_figure", shown.append)
    real = nodes.predict_full_image_with_attention

    def spy(net, image, windows):
        threads.append(threading.current_thread().name)
        return real(net, image, windows)

    monkeypatch.setattr(nodes, "predict_full_image_with_attention", spy)
    manifest = val_manifest(tmp_path, count=4)
    evaluation_params = {**EVALUATION, "qualitative_images": 3}
    for streams in (2, 1):
        runtime = {"device": "cpu", "predict_streams": streams}
        nodes.plot_qualitative_grid(
            manifest, MODEL, evaluation_params, runtime, round_1=checkpoint("round_1", 0)
        )
    streamed, loop = shown
    assert all(name.startswith("hrda-image") for name in threads[:3])  # the streams' threads
    assert threads[3:] == [threading.current_thread().name] * 3
    assert [s.name for s in streamed] == [s.name for s in loop] and len(loop) == 3
    for a, b in zip(streamed, loop, strict=True):
        assert np.array_equal(a.views["round_1"].prediction, b.views["round_1"].prediction)
        assert np.array_equal(a.views["round_1"].attention, b.views["round_1"].attention)


def _parameters(env: str | None) -> EvaluationParams:
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"),
        base_env="base",
        default_run_env="local",
        env=env,
        merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"],
    )
    return parse(EvaluationParams, loader["parameters"]["evaluation"], "evaluation")


@pytest.mark.parametrize(
    ("env", "subsets"),
    [
        (None, {"all": None}),
        ("gta2cs", {"all": None}),
        (
            "synthia2cs",
            {
                "all": None,
                "synthia_16": list(SYNTHIA_16_CLASSES),
                "synthia_13": list(SYNTHIA_13_CLASSES),
            },
        ),
    ],
)
def test_each_environment_reports_the_literature_class_subsets(env, subsets) -> None:
    params = _parameters(env)
    assert params.class_subsets == subsets
    assert tuple(params.small_classes) == SMALL_OBJECT_CLASSES


def test_small_class_miou_stays_inside_the_subset() -> None:
    result = evaluation("round_1", seed=3)
    params = {"class_subsets": {"synthia_13": list(SYNTHIA_13_CLASSES), "all": None}}
    table, _, summary = build_miou_report(params, result)
    iou = iou_per_class(torch.tensor(result["confusion"]["fused"])).numpy()
    fused = table[table["prediction"] == "fused"].set_index("classes")
    in_13 = [c for c in SMALL_OBJECT_CLASSES if c in SYNTHIA_13_CLASSES]  # no pole
    assert CITYSCAPES_CLASSES.index("pole") not in in_13
    assert fused.loc["synthia_13", "small_class_miou"] == pytest.approx(np.mean(iou[in_13]))
    assert fused.loc["all", "small_class_miou"] == pytest.approx(
        np.mean(iou[list(SMALL_OBJECT_CLASSES)])
    )
    assert fused.loc["synthia_13", "miou"] == pytest.approx(np.mean(iou[list(SYNTHIA_13_CLASSES)]))
    assert summary["class_subsets"]["synthia_13"] == [
        CITYSCAPES_CLASSES[c] for c in SYNTHIA_13_CLASSES
    ]
    assert len(summary["miou_table"]) == 3 * 2  # predictions x subsets


def test_a_subset_without_small_classes_has_no_small_class_miou() -> None:
    table, _, _ = build_miou_report({"class_subsets": {"flat": [0, 1]}}, evaluation("m", seed=0))
    assert table["small_class_miou"].map(math.isnan).all()


def test_evaluation_and_its_figure_predict_with_the_runs_test_time_windows(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's hr_window_batch once bounded memory whatever the run said."""
    used = []
    for name in ("predict_full_image_branches", "predict_full_image_with_attention"):
        real = getattr(nodes, name)

        def spy(net, image, windows, real=real):
            used.append((net.hr_window_batch, windows))
            return real(net, image, windows)

        monkeypatch.setattr(nodes, name, spy)
    manifest = val_manifest(tmp_path, count=1)
    runtime = {"device": "cpu", "predict_streams": 1}
    evaluate_model(checkpoint("round_1", 0), manifest, RUN_MODEL, EVALUATION, runtime)
    nodes.plot_qualitative_grid(
        manifest, RUN_MODEL, EVALUATION, runtime, round_1=checkpoint("round_1", 0)
    )
    assert used == [RUN_WINDOWS, RUN_WINDOWS]


def test_evaluation_honours_channels_last_with_the_same_counts(
    tmp_path: Path, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``runtime.channels_last`` once reached training only (NCHW convolutions at test time
    on a GPU, whatever the setting)."""
    layouts = []
    real = nodes.predict_full_image_branches

    def spy(net, image, windows):
        kernel = next(p for p in net.parameters() if p.dim() == 4)
        layouts.append(kernel.is_contiguous(memory_format=torch.channels_last))
        return real(net, image, windows)

    monkeypatch.setattr(nodes, "predict_full_image_branches", spy)
    manifest = val_manifest(tmp_path, count=2)

    def evaluated(layout: str) -> dict:
        runtime = {"device": "cpu", "predict_streams": 1, "channels_last": layout}
        return evaluate_model(checkpoint("round_1", 0), manifest, MODEL, EVALUATION, runtime)

    on, off = (np.asarray(evaluated(layout)["confusion"]["fused"]) for layout in ("on", "off"))
    assert layouts == [True, True, False, False]
    # The same predictions up to float summation order (another kernel's): a pixel or two.
    assert on.sum() == off.sum() and np.abs(on - off).sum() <= 0.002 * on.sum()


def _chain(*links: tuple[str, str, str | None]) -> list[dict]:
    """Evaluations of (model, its weights' digest, the digest of the model it started from)."""
    cm = np.diag(np.arange(1, 20)).tolist()
    return [
        {"model": m, "weights_sha256": w, "input_model_sha256": i, "confusion": {"fused": cm}}
        for m, w, i in links
    ]


@pytest.mark.parametrize(
    ("links", "broken"),
    [
        ([("source_only", "A", None), ("round_1", "B", "A"), ("round_2", "C", "B")], []),
        # round_2 of a first run beside round_1 of a second run stopped in its round 2
        ([("source_only", "A", None), ("round_1", "B2", "A"), ("round_2", "C", "B")], ["round_2"]),
        ([("source_only", "A2", None), ("round_1", "B", "A")], ["round_1"]),
        # checkpoints from before the start was recorded, or a chain evaluated in part
        ([("source_only", "A", None), ("round_1", "B", None)], []),
        ([("round_2", "C", "B")], []),
    ],
)  # fmt: skip
def test_a_table_of_two_runs_rounds_says_which_round_broke_the_chain(caplog, links, broken) -> None:
    """A run stopped in round 2 and re-run in part left one run's round_1 beside another's
    round_2; the reports scored them as one adaptation without a word."""
    with caplog.at_level("WARNING", logger="hrda_kedro"):
        _, _, summary = build_miou_report(EVALUATION, *_chain(*links))
    assert summary["broken_links"] == broken
    warned = [
        r.getMessage() for r in caplog.records if "was trained from another" in r.getMessage()
    ]
    assert [w.split(" ")[0] for w in warned] == broken
