"""The ``predict`` pipeline: list the input folder, segment every image, draw overlays."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import draw_overlays, list_inputs, segment_images


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                list_inputs,
                inputs="params:predict",
                outputs="predict_manifest",
                name="list_predict_inputs",
            ),
            Node(
                segment_images,
                inputs=["predict_manifest", "params:predict", "params:runtime"],
                outputs=["predict_labels", "predict_attention"],
                name="segment_images",
            ),
            Node(
                draw_overlays,
                inputs=["predict_manifest", "predict_labels", "params:predict"],
                outputs="predict_overlays",
                name="draw_overlays",
            ),
        ]
    )
