"""Nodes of the ``export`` and ``export_onnx`` pipelines (thin: see :mod:`hrda_kedro.export`)."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from hrda_kedro.datasets.export_datasets import DIGEST_KEY
from hrda_kedro.export import checkpoint_from_export, export_weights, onnx_window_predictor
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.params import parse

logger = logging.getLogger(__name__)


def export_model(checkpoint: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The student's weights as safetensors and its configuration as JSON, with the run's
    test-time windows (``model.inference``) in place of the checkpoint's."""
    inference = parse(ModelConfig, model, "model").inference
    weights, config = export_weights(checkpoint, inference)
    logger.info(
        "exporting %s (%d tensors, %.1f M parameters)",
        config["stage"],
        len(weights),
        sum(w.numel() for w in weights.values()) / 1e6,
    )
    return {"weights": weights, "config": config}


def export_onnx(exported: dict[str, Any]) -> bytes:
    """The exported model's window predictor as an ONNX graph (needs the ``export`` extra:
    onnx), with the weights' digest of ``config.json`` in its metadata."""
    if importlib.util.find_spec("onnx") is None:
        raise ImportError(
            'the ONNX export needs the onnx package: pip install -e ".[export]" '
            "(the safetensors export, `kedro run --pipeline=export`, does not)"
        )
    checkpoint = checkpoint_from_export(exported["weights"], exported["config"], "exported_model")
    # checkpoint_from_export has checked the recorded digest against the weights
    graph = onnx_window_predictor(checkpoint, exported["config"].get(DIGEST_KEY))
    logger.info(
        "exported the window predictor of %s to ONNX (%.1f MB)",
        checkpoint.get("stage"),
        len(graph) / 1e6,
    )
    return graph
