"""The whole ``uda`` pipeline (the shared finished project), and a bad parameter that stops
a KedroSession before any node."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from hrda_kedro.hrda.checkpoint import load_checkpoint
from hrda_kedro.params import ParameterError
from tests.conftest import TINY_PARAMS


def _latest(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern))
    assert found, pattern
    return found[-1]


@pytest.mark.slow
def test_uda_runs_warmup_two_rounds_and_evaluation(reference: Path) -> None:
    """The shared finished project (tests/conftest.py): a whole ``kedro run`` of ``uda``
    with 6 warmup and 2 x 3 round iterations on 4 source and 3 target-train images."""
    data = reference / "data"
    warm = load_checkpoint(_latest("06_models/source_only/model.pt/*/model.pt", data))
    round_2 = load_checkpoint(_latest("06_models/round_2/model.pt/*/model.pt", data))
    assert warm["stage"] == "source_only" and warm["iterations"] == 6
    assert round_2["stage"] == "round_2" and round_2["iterations"] == 3
    assert round_2["teacher"] is not None  # online EMA teacher carried on
    table = pd.read_csv(_latest("08_reporting/miou_table.csv/*/miou_table.csv", data))
    assert set(table["model"]) == {"source_only", "round_1", "round_2"}
    assert set(table["prediction"]) == {"fused", "context", "detail"}
    assert table["miou"].between(0, 1).all()
    # each round records the model it started from: the chain evaluated is one adaptation
    evaluated = {
        name: json.loads((data / f"07_model_output/evaluation/{name}.json").read_text())
        for name in ("source_only", "round_1", "round_2")
    }
    assert evaluated["round_1"]["input_model_sha256"] == evaluated["source_only"]["weights_sha256"]
    assert evaluated["round_2"]["input_model_sha256"] == evaluated["round_1"]["weights_sha256"]
    summary = json.loads(_latest("08_reporting/evaluation_summary.json/*/*.json", data).read_text())
    assert summary["broken_links"] == []
    labels = sorted((data / "07_model_output/round_1/pseudo_labels").rglob("*_label.png"))
    assert len(labels) == 3  # one pseudo-label per target-train image
    history = pd.read_csv(data / "08_reporting/round_1/training_history.csv")
    assert {"loss", "source_fused", "mix_fused", "pseudo_weight", "lr"} <= set(history.columns)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.slow
def test_every_json_the_run_writes_is_strict_json(reference: Path) -> None:
    """Python writes NaN as a bare ``NaN`` that other JSON readers refuse: the summary once
    held one for every class absent from the ground truth (usual with a user's own data)."""
    written = [p for p in (reference / "data").rglob("*.json") if p.is_file()]
    assert any(p.parent.parent.name == "evaluation_summary.json" for p in written)
    for path in written:
        json.loads(path.read_text(), parse_constant=_refuse)
    summary = json.loads(
        _latest("08_reporting/evaluation_summary.json/*/*.json", reference / "data").read_text()
    )
    absent = [iou for row in summary["per_class_iou"] for iou in row.values() if iou is None]
    assert absent  # the tiny run's 2 target-val images lack some classes: null, not NaN


def test_bad_parameter_stops_before_any_node(project_copy: Path) -> None:
    bootstrap_project(project_copy)
    params = {**TINY_PARAMS, "warmup": {"iterations": -5}}
    with KedroSession.create(project_path=project_copy, runtime_params=params) as session:
        with pytest.raises(ParameterError, match=r"warmup\.iterations: expected >= 0, got -5"):
            session.run(pipeline_names=["uda"])
    assert not (project_copy / "data" / "01_raw").exists()  # ingestion never ran
