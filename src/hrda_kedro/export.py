"""Deployable forms of a trained model: safetensors weights + JSON config, and ONNX.

A training checkpoint carries the optimiser-free student, the EMA teacher, the history and
the configuration in one ``torch.save`` file. For deployment:

- ``model.safetensors`` (the student's weights; no pickle at all) and ``config.json``
  (``model_params``, stage, iterations): ``predict`` loads the pair like a checkpoint;
- an ONNX graph of the *window predictor*: one HR window in, the fused logits out (the LR
  context pass, the HR detail crops sliding over the window and the scale-attention fusion,
  all in the graph), for runtimes without PyTorch. Full images are tiled into windows
  around it, as :mod:`hrda_kedro.hrda.inference` does.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import torch
from torch import nn

from hrda_kedro.datasets.export_datasets import DIGEST_KEY
from hrda_kedro.hrda.checkpoint import CheckpointError
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.model_config import InferenceConfig, ModelConfig
from hrda_kedro.hrda.training.distributed import state_digest
from hrda_kedro.params import parse
from hrda_kedro.runtime.models import model_from_checkpoint, model_params_dict, with_inference

EXPORT_FORMAT = "hrda-kedro-export/1"
ONNX_DIGEST_KEY = f"hrda_kedro.{DIGEST_KEY}"  # the ONNX graph's metadata entry


class WindowPredictor(nn.Module):
    """``(N, 3, H, W)`` normalised HR windows -> fused logits ``(N, C, H / o, W / o)``."""

    def __init__(self, model: HRDAModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, window_hr: torch.Tensor) -> torch.Tensor:
        return self.model.predict_window(window_hr).fused


def export_weights(
    checkpoint: dict[str, Any], inference: InferenceConfig | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The student's weights (contiguous, as safetensors requires) and the JSON config.

    ``inference``: the test-time windows to record in place of the checkpoint's (the run's
    ``model.inference``, checked against the model's crops); the ONNX graph is made for them.
    """
    if "model_params" not in checkpoint or "model" not in checkpoint:
        raise CheckpointError("export: not a trained-model checkpoint (no model_params/model)")
    model_params = checkpoint["model_params"]
    if inference is not None:
        source = f"the {checkpoint.get('stage')} checkpoint"
        trained = parse(ModelConfig, model_params, f"{source}:model_params")
        model_params = model_params_dict(with_inference(trained, inference, source))
    weights = {k: v.detach().cpu().contiguous() for k, v in checkpoint["model"].items()}
    config = {
        "format": EXPORT_FORMAT,
        "stage": checkpoint.get("stage"),
        "iterations": checkpoint.get("iterations"),
        "model_params": model_params,
        DIGEST_KEY: state_digest(weights),
    }
    return weights, config


def checkpoint_from_export(
    weights: dict[str, torch.Tensor], config: dict[str, Any], source: str
) -> dict[str, Any]:
    """The checkpoint form ``model_from_checkpoint`` reads, from an exported pair."""
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{source}: config.json is not an hrda-kedro export (expected format {EXPORT_FORMAT!r})"
        )
    if not isinstance(config.get("model_params"), dict):
        raise CheckpointError(
            f"{source}: config.json has no model_params mapping; expected the config.json of "
            "an hrda-kedro export, run kedro run --pipeline=export again"
        )
    recorded = config.get(DIGEST_KEY)  # exports before it was recorded have none
    if recorded is not None and recorded != state_digest(weights):
        raise CheckpointError(
            f"{source}: model.safetensors is not the model config.json describes (the "
            "weights' sha256 differs): the folder mixes two exports; expected one export's "
            "pair, run kedro run --pipeline=export again"
        )
    return {
        "stage": config.get("stage"),
        "iterations": config.get("iterations"),
        "model_params": config["model_params"],
        "model": weights,
    }


def onnx_window_predictor(
    checkpoint: dict[str, Any], weights_digest: str | None = None, opset: int = 17
) -> bytes:
    """ONNX bytes of the checkpoint's window predictor, for one window of the inference size.

    ``weights_digest``: the weights' digest when the caller has checked it already (an
    export's ``config.json``), so that a large model is not hashed twice. Exported with the TorchScript-based exporter (``dynamo=False``): the sliding windows
    are a fixed set of crops for a fixed window size, which tracing records exactly; the
    dynamo exporter would need onnxscript.
    """
    model, params = model_from_checkpoint(checkpoint, "export")
    predictor = WindowPredictor(model.eval()).eval()
    window = torch.zeros(1, 3, *params.window)
    buffer = io.BytesIO()
    # Tracing warns at every shape check it turns into a constant: for a fixed window size
    # those are constants, which is what the fixed-size graph records.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            predictor,
            (window,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["window"],
            output_names=["fused_logits"],
        )
    return _with_digest(buffer.getvalue(), weights_digest or state_digest(checkpoint["model"]))


def _with_digest(graph: bytes, digest: str) -> bytes:
    """The ONNX graph with the weights' digest in its metadata, so that a deployment can
    check it against ``config.json``."""
    import onnx

    proto = onnx.load_from_string(graph)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_DIGEST_KEY, digest
    return proto.SerializeToString()
