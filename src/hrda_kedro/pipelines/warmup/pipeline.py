"""The ``warmup`` pipeline: one instance of the warmup template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Pipeline

from hrda_kedro.pipelines.templates import PARAMETERS, training_node

from .nodes import train_source_only


def warmup_template(parameters: Mapping[str, str] = PARAMETERS) -> Pipeline:
    """Source-only training on the labelled source domain; ``parameters``: group -> the
    dataset holding it (:data:`hrda_kedro.pipelines.templates.PARAMETERS`)."""
    return Pipeline(
        [
            training_node(
                "warmup",
                train_source_only,
                inputs=[
                    "source_train_manifest",
                    "source_class_pixel_counts",
                    parameters["model"],
                    parameters["warmup"],
                    parameters["runtime"],
                ],
                outputs=["source_only_model", "source_only_history"],
                name="train_source_only",
            )
        ]
    )


def create_pipeline(**kwargs: Any) -> Pipeline:
    return warmup_template()
