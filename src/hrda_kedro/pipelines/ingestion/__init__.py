"""The ``ingestion`` pipeline: data sets in, checked manifests and class statistics out."""

from hrda_kedro.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
