"""The settings a GPU run gets by default (bf16 autocast, channels_last), run on the CPU:
the tests' CPU runs use fp32 and the default memory layout, so without this nothing would
run the GPU's numerics before a user's GPU does."""

from __future__ import annotations

import shutil
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
def test_uda_exports_and_predict_run_with_the_gpu_defaults(project_copy: Path) -> None:
    """The whole ``uda`` run (a self-training step raised a dtype error in the loss under
    bf16 before), then both exports and predict with its final model."""
    bootstrap_project(project_copy)
    data = project_copy / "data"
    photos = data / "photos"
    for pipeline in ["uda", "export", "export_onnx", "predict"]:
        if pipeline == "predict":  # the drawn target-val images, as a user's photos
            (photos / "sub").mkdir(parents=True)
            for image in data.glob("01_raw/*/target_val/images/*.png"):
                shutil.copy(image, photos / "sub" / image.name)
        params = {**GPU_DEFAULTS, "predict": {"input_dir": str(photos)}}
        with KedroSession.create(project_path=project_copy, runtime_params=params) as session:
            session.run(pipeline_names=[pipeline])
    (table_path,) = data.glob("08_reporting/miou_table.csv/*/miou_table.csv")
    table = pd.read_csv(table_path)
    assert set(table["model"]) == {"source_only", "round_1", "round_2"}
    assert table["miou"].between(0, 1).all()
    (model_path,) = data.glob("06_models/round_2/model.pt/*/model.pt")
    weights = load_checkpoint(model_path)["model"]
    assert all(
        tensor.dtype == torch.float32 for tensor in weights.values() if tensor.is_floating_point()
    )
    assert len(list((photos / "sub").iterdir())) == 2  # the tests' target-val images
    for kind in ["labels", "overlays"]:
        written = sorted(
            p.name for p in (data / "07_model_output/predict" / kind / "sub").iterdir()
        )
        assert written == sorted(p.name for p in (photos / "sub").iterdir())
    export = data / "06_models/export"
    assert {"config.json", "model.safetensors", "window_predictor.onnx"} <= {
        p.name for p in export.iterdir()
    }
