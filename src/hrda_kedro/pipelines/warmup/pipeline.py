"""The ``warmup`` pipeline."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_source_only


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_source_only,
                inputs=[
                    "source_train_manifest",
                    "source_class_pixel_counts",
                    "params:model",
                    "params:warmup",
                    "params:runtime",
                ],
                outputs=["source_only_model", "source_only_history"],
                name="train_source_only",
                tags=["training"],
            )
        ]
    )
