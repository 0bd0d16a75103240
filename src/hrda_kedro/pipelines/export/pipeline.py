"""The ``export`` and ``export_onnx`` pipelines: the last round's model, made deployable."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import export_model, export_onnx


def create_pipeline(model: str = "round_1.model", **kwargs) -> Pipeline:
    """safetensors + JSON of ``model`` (a checkpoint dataset: the registry passes the last round's)."""
    return Pipeline(
        [Node(export_model, inputs=model, outputs="exported_model", name="export_model")]
    )


def create_onnx_pipeline(model: str = "round_1.model", **kwargs) -> Pipeline:
    """ONNX of the window predictor of ``model``."""
    return Pipeline([Node(export_onnx, inputs=model, outputs="exported_onnx", name="export_onnx")])
