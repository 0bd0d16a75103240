"""The ``export`` and ``export_onnx`` pipelines: the run's final model, made deployable."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from .nodes import export_model, export_onnx


def create_pipeline(model: str, **kwargs: Any) -> Pipeline:
    """safetensors + JSON of ``model``, a checkpoint dataset (the registry passes the final
    one, :func:`hrda_kedro.pipelines.self_training.pipeline.final_model`)."""
    return Pipeline(
        [
            Node(
                export_model,
                inputs=[model, "params:model"],
                outputs="exported_model",
                name="export_model",
            )
        ]
    )


def create_onnx_pipeline(model: str, **kwargs: Any) -> Pipeline:
    """ONNX of the window predictor of ``model``, made from the export it writes first, so
    that the folder's three files are of one model."""
    return create_pipeline(model) + Pipeline(
        [Node(export_onnx, inputs="exported_model", outputs="exported_onnx", name="export_onnx")]
    )
