"""The ``predict`` pipeline: check the catalog's ``predict_images``, segment every image,
draw overlays."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import draw_overlays, list_inputs, segment_images


def create_pipeline(model: str | None = None, **kwargs) -> Pipeline:
    """``model``: the checkpoint dataset to segment with when ``predict.checkpoint`` is null
    (the registry passes the final one,
    :func:`hrda_kedro.pipelines.self_training.pipeline.final_model`, so ``--load-versions``
    and kedro viz see it)."""
    return Pipeline(
        [
            Node(
                list_inputs,
                inputs=["predict_images", "params:predict"],
                outputs="predict_manifest",
                name="list_predict_inputs",
            ),
            Node(
                segment_images,
                inputs=["predict_manifest", "params:predict", "params:model", "params:runtime"]
                + ([model] if model else []),
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
