"""The evaluation pipeline's report nodes, run on fabricated inputs through the project catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import MemoryDataset

from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.pipelines.evaluation import create_pipeline
from hrda_kedro.pipelines.evaluation.nodes import _detail_weight
from tests.conftest import PROJECT_ROOT
from tests.pipelines.evaluation.fabricate import project_catalog, write_reports

FIGURES = ("per_class_iou", "training_curves", "pseudo_label_quality", "qualitative")


def test_report_nodes_write_every_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = project_catalog(PROJECT_ROOT)
    write_reports(catalog, tmp_path / "data")

    reporting = tmp_path / "data" / "08_reporting"
    for name in FIGURES:
        files = list(reporting.glob(f"{name}.png/*/{name}.png"))  # versioned
        assert len(files) == 1, name
        image = catalog.load(f"{name}_figure")
        assert image.width > 400 and image.height > 200
    table = catalog.load("miou_table")
    assert set(table["model"]) == {"source_only", "round_1", "round_2"}
    assert table[["miou", "pixel_accuracy", "small_class_miou"]].stack().between(0, 1).all()
    summary = catalog.load("evaluation_summary")
    assert pd.DataFrame(summary["miou_table"]).equals(table)
    assert summary["class_subsets"] == {"all": list(CITYSCAPES_CLASSES)}
    quality = catalog.load("pseudo_label_quality_table")
    assert quality["round"].tolist() == ["round_1", "round_2"]
    assert quality["confident_pixel_share"].tolist() == pytest.approx([0.7, 0.8])


@pytest.mark.parametrize("rounds", [0, 1, 3])
def test_report_nodes_follow_the_rounds(rounds: int) -> None:
    reports = create_pipeline(rounds=rounds).only_nodes_with_tags("reports")
    inputs = reports.inputs()
    rounds_seen = {f"round_{r}.training_history" for r in range(1, rounds + 1)}
    assert rounds_seen <= inputs and "source_only_history" in inputs
    last_model = f"round_{rounds}.model" if rounds else "source_only_model"
    assert {"source_only_model", last_model} <= inputs
    has_quality = "report_pseudo_label_quality" in {n.name for n in reports.nodes}
    assert has_quality == (rounds > 0)


def test_reports_redraw_from_persisted_datasets_only() -> None:
    """``kedro run --pipeline=evaluation --tags=reports`` must not need in-memory data."""
    catalog = project_catalog(PROJECT_ROOT)
    reports = create_pipeline(rounds=2).only_nodes_with_tags("reports")
    in_memory = [
        name
        for name in reports.inputs()
        if not name.startswith("params:") and isinstance(catalog.get(name), MemoryDataset)
    ]
    assert in_memory == []


def test_class_wise_attention_is_read_at_the_predicted_class() -> None:
    attention = torch.rand(1, 19, 4, 6)
    prediction = torch.randint(0, 19, (1, 4, 6))
    weight = _detail_weight(attention, prediction)
    expected = np.take_along_axis(attention[0].numpy(), prediction.numpy(), axis=0)[0]
    assert weight.shape == (4, 6) and np.array_equal(weight, expected)
    single = torch.rand(1, 1, 4, 6)
    assert np.array_equal(_detail_weight(single, prediction), single[0, 0].numpy())
