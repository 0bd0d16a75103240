"""The settings a GPU run gets by default (bf16 autocast, channels_last), run on the CPU:
the tests' CPU runs use fp32 and the default memory layout, so without this nothing would
run the GPU's numerics before a user's GPU does."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from hrda_kedro.hrda.checkpoint import load_checkpoint
from tests.conftest import TINY_PARAMS

GPU_DEFAULTS = {
    **TINY_PARAMS,
    "runtime": {**TINY_PARAMS["runtime"], "precision": "bf16", "channels_last": "on"},
}


@pytest.mark.slow
def test_uda_and_the_exports_run_with_the_gpu_defaults(project_copy: Path) -> None:
    """The whole ``uda`` run (a self-training step raised a dtype error in the loss under
    bf16 before), then both exports of its final model."""
    bootstrap_project(project_copy)
    for pipeline in ["uda", "export", "export_onnx"]:
        with KedroSession.create(project_path=project_copy, runtime_params=GPU_DEFAULTS) as session:
            session.run(pipeline_names=[pipeline])
    data = project_copy / "data"
    (table_path,) = data.glob("08_reporting/miou_table.csv/*/miou_table.csv")
    table = pd.read_csv(table_path)
    assert set(table["model"]) == {"source_only", "round_1", "round_2"}
    assert table["miou"].between(0, 1).all()
    (model_path,) = data.glob("06_models/round_2/model.pt/*/model.pt")
    weights = load_checkpoint(model_path)["model"]
    assert all(
        tensor.dtype == torch.float32 for tensor in weights.values() if tensor.is_floating_point()
    )
    export = data / "06_models/export"
    assert {"config.json", "model.safetensors", "window_predictor.onnx"} <= {
        p.name for p in export.iterdir()
    }
