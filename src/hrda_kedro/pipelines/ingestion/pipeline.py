"""Wiring of the ingestion nodes (see ``conf/base/catalog_ingestion.yml`` for the outputs)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from hrda_kedro.pipelines.ingestion.nodes import (
    compute_class_frequencies,
    ingest_datasets,
    plot_samples,
)

OUTPUTS = (
    "source_train_manifest",
    "target_train_manifest",
    "target_val_manifest",
    "extra_targets_manifest",
    "source_class_pixel_counts",
    "ingestion_report",
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_datasets,
                inputs=["params:ingestion", "params:ingestion_datasets"],
                outputs={name: name for name in OUTPUTS},
                name="ingest_datasets",
            ),
            Node(
                compute_class_frequencies,
                inputs="source_class_pixel_counts",
                outputs="source_class_frequencies",
                name="compute_class_frequencies",
            ),
            Node(
                plot_samples,
                inputs=["source_train_manifest", "target_train_manifest", "params:ingestion"],
                outputs="ingestion_samples",
                name="plot_ingestion_samples",
            ),
        ]
    )
