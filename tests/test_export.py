"""Deployable exports: safetensors + JSON that predict loads, ONNX parity in onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hrda_kedro import export as export_module
from hrda_kedro.datasets.export_datasets import ExportedModelDataset
from hrda_kedro.export import WindowPredictor
from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.checkpoint import CheckpointError
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.trainer import StageResult
from hrda_kedro.params import ParameterError, parse
from hrda_kedro.pipelines.export.nodes import export_model, export_onnx
from hrda_kedro.pipelines.predict.nodes import load_checkpoint_file
from hrda_kedro.runtime.models import build_model, model_from_checkpoint
from hrda_kedro.stages import checkpoint_payload
from tests.tiny_data import TinySegmentationSet

MODEL = {
    "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
    "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def checkpoint() -> dict:
    """A round checkpoint of a tiny model with random (not initial) weights."""
    params = parse(ModelConfig, MODEL, "model")
    torch.manual_seed(0)
    model = build_model(params)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.add_(torch.randn_like(tensor) * 0.05)
    return checkpoint_payload(
        StageResult(model=model.state_dict(), teacher=None), params, "round_2"
    )


def _window(params: ModelConfig) -> torch.Tensor:
    """One image of the tiny data set, cropped to the inference window and normalised."""
    image = TinySegmentationSet(1, seed=5)[0]["image"][:, : params.window[0], : params.window[1]]
    return normalize(image.unsqueeze(0).float())


def test_predict_loads_the_safetensors_export_as_the_checkpoint(
    checkpoint: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    ExportedModelDataset(filepath=str(folder)).save(export_model(checkpoint, MODEL))
    config = json.loads((folder / "config.json").read_text())
    assert config["stage"] == "round_2" and config["model_params"] == checkpoint["model_params"]

    for path in (folder, folder / "model.safetensors"):  # the folder or its weights file
        loaded, where = load_checkpoint_file(str(path))
        assert where == folder
        exported, params = model_from_checkpoint(loaded, "export")
        original, _ = model_from_checkpoint(checkpoint, "checkpoint")
        window = _window(params)
        with torch.no_grad():
            assert torch.equal(
                exported.eval().predict_window(window).fused,
                original.eval().predict_window(window).fused,
            )


def test_a_foreign_config_is_refused(checkpoint: dict, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    ExportedModelDataset(filepath=str(folder)).save(export_model(checkpoint, MODEL))
    (folder / "config.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match=r"config\.json is not an hrda-kedro export"):
        load_checkpoint_file(str(folder))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda config: config.pop("model_params"), r"config\.json has no model_params mapping"),
        (
            lambda config: config["model_params"]["hrda"].update(scale=4),
            r"model_params\.hrda\..* \(a setting the checkpoint records, not the run.s\)",
        ),
    ],
)
def test_an_edited_config_is_one_checkpoint_error_naming_the_export(
    checkpoint: dict, tmp_path: Path, edit: Any, message: str
) -> None:
    """A missing model_params was a KeyError traceback; a bad value asked the user to fix
    conf/, where the key is not."""
    folder = tmp_path / "export"
    ExportedModelDataset(filepath=str(folder)).save(export_model(checkpoint, MODEL))
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        model_from_checkpoint(*load_checkpoint_file(str(folder)))


def _retrained(checkpoint: dict) -> dict:
    """The same model after more training: other weights."""
    model = {k: v + 0.01 if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    return {**checkpoint, "model": model}


def test_a_pair_of_two_exports_is_refused(checkpoint: dict, tmp_path: Path) -> None:
    """The two files are written one after the other: a crash between them, or a copied
    file, leaves new weights beside the old config, which predict once used silently."""
    folder = tmp_path / "export"
    ExportedModelDataset(filepath=str(folder)).save(export_model(checkpoint, MODEL))
    old_config = (folder / "config.json").read_bytes()
    ExportedModelDataset(filepath=str(folder)).save(export_model(_retrained(checkpoint), MODEL))
    load_checkpoint_file(str(folder))  # one export's pair loads
    (folder / "config.json").write_bytes(old_config)
    with pytest.raises(CheckpointError, match=r"mixes two exports"):
        load_checkpoint_file(str(folder))


def test_the_export_folder_holds_one_model(checkpoint: dict, tmp_path: Path) -> None:
    """The ONNX graph records the weights' digest of config.json; exporting another model
    removes the previous model's graph instead of leaving it to be deployed."""
    onnx = pytest.importorskip("onnx")
    folder = tmp_path / "export"
    exports = ExportedModelDataset(filepath=str(folder))
    exported = export_model(checkpoint, MODEL)
    exports.save(exported)
    (folder / "window_predictor.onnx").write_bytes(export_onnx(exports.load()))
    metadata = {p.key: p.value for p in onnx.load(folder / "window_predictor.onnx").metadata_props}
    assert metadata["hrda_kedro.weights_sha256"] == exported["config"]["weights_sha256"]
    renamed = folder / "deploy_v1.onnx"  # a catalog that names exported_onnx otherwise
    renamed.write_bytes((folder / "window_predictor.onnx").read_bytes())
    exports.save(export_model(checkpoint, MODEL))  # the same model again: its graphs stay
    assert (folder / "window_predictor.onnx").is_file() and renamed.is_file()
    exports.save(export_model(_retrained(checkpoint), MODEL))
    assert not (folder / "window_predictor.onnx").exists() and not renamed.exists()
    assert ExportedModelDataset(filepath=str(folder)).load()["config"] != exported["config"]


def test_onnx_window_predictor_matches_torch_on_one_image(checkpoint: dict) -> None:
    """LR context, HR detail crops and attention fusion, all in the graph; CPU runtime."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    graph = export_onnx(export_model(checkpoint, MODEL))
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    model, params = model_from_checkpoint(checkpoint, "checkpoint")
    window = _window(params)
    (onnx_logits,) = session.run(None, {"window": window.numpy()})
    with torch.no_grad():
        torch_logits = WindowPredictor(model.eval())(window).numpy()
    assert onnx_logits.shape == torch_logits.shape == (1, 19, 16, 16)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=1e-4)
    assert (onnx_logits.argmax(1) == torch_logits.argmax(1)).all()


def test_export_onnx_hashes_the_weights_once(
    checkpoint: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest checked against config.json is the one written into the graph (hashing a
    MiT-B5 export took 0.3 s, twice before); an export without one gets it computed."""
    onnx = pytest.importorskip("onnx")
    exported = export_model(checkpoint, MODEL)
    calls = []
    real_digest = export_module.state_digest
    monkeypatch.setattr(
        export_module, "state_digest", lambda weights: calls.append(1) or real_digest(weights)
    )
    graph = export_onnx(exported)
    assert len(calls) == 1
    recorded = {p.key: p.value for p in onnx.load_from_string(graph).metadata_props}
    assert recorded["hrda_kedro.weights_sha256"] == exported["config"]["weights_sha256"]
    del exported["config"]["weights_sha256"]  # an export made before digests were recorded
    graph = export_onnx(exported)
    recorded = {p.key: p.value for p in onnx.load_from_string(graph).metadata_props}
    assert recorded["hrda_kedro.weights_sha256"] == real_digest(exported["weights"])


def test_the_export_records_the_runs_test_time_windows(checkpoint: dict) -> None:
    """``model.inference`` does not shape the weights: the run's replaces the checkpoint's in
    config.json, and the ONNX graph takes windows of the run's size (it once took the
    checkpoint's, whatever the run said)."""
    run_model = {**MODEL, "inference": {"window": [96, 96], "stride": [32, 32]}}
    exported = export_model(checkpoint, run_model)
    inference = exported["config"]["model_params"]["inference"]
    assert inference["window"] == [96, 96] and inference["stride"] == [32, 32]
    assert exported["config"]["model_params"]["hrda"] == checkpoint["model_params"]["hrda"]
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    ort = pytest.importorskip("onnxruntime")
    graph = export_onnx(exported)
    dims = [
        d.dim_value for d in onnx.load_from_string(graph).graph.input[0].type.tensor_type.shape.dim
    ]
    assert dims == [1, 3, 96, 96]
    # A 96 px window's LR pass (48 px) is not detail-sized: the detail crops slide apart from
    # it, a path the 64 px default never traced (its tracer once failed there).
    model, params = model_from_checkpoint(checkpoint, "checkpoint")
    window = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"window": window.numpy()})
    with torch.no_grad():
        torch_logits = WindowPredictor(model.eval())(window).numpy()
    assert onnx_logits.shape == (1, 19, 24, 24)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=1e-4)


def test_a_run_window_the_model_cannot_take_is_named_with_the_model(checkpoint: dict) -> None:
    """A window that fits the run's model (scale 1) but not the checkpoint's (scale 2)."""
    run_model = {
        **MODEL,
        "hrda": {"scale": 1, "context_crop": [64, 64], "detail_crop": [32, 32]},
        "inference": {"window": [40, 40]},
    }
    with pytest.raises(
        ParameterError,
        match=r"^parameter model\.inference\.window: the encoder 'mit-nano' needs inputs of at "
        r"least 32 pixels a side; \[40, 40\] / scale 2 is smaller .*; for the model of the "
        r"round_2 checkpoint \(context crop \[64, 64\], detail crop \[32, 32\], scale 2\)$",
    ):
        export_model(checkpoint, run_model)
