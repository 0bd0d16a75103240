"""Ingestion nodes: validate the parameters, then hand over to :mod:`hrda_kedro.data`."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from hrda_kedro.data.figures import samples_figure
from hrda_kedro.data.ingest import IngestionDatasets, IngestionSettings, class_frequencies, ingest
from hrda_kedro.params import parse


def ingest_datasets(
    ingestion: dict[str, Any], ingestion_datasets: dict[str, Any]
) -> dict[str, Any]:
    """Draw the embedded benchmark if needed, check and convert every split, and commit.

    One node for all splits, so that a failure in any of them saves no output at all.
    """
    settings = parse(IngestionSettings, ingestion, "ingestion")
    datasets = parse(IngestionDatasets, ingestion_datasets, "ingestion_datasets")
    result = ingest(settings, datasets)
    return {
        **{f"{split}_manifest": manifest for split, manifest in result.manifests.items()},
        "source_class_pixel_counts": result.class_pixel_counts["source_train"],
        "ingestion_report": result.report,
    }


def compute_class_frequencies(source_class_pixel_counts: pd.DataFrame) -> pd.DataFrame:
    """Source class frequencies for rare class sampling, stored so training never lacks them."""
    return class_frequencies(source_class_pixel_counts)


def plot_samples(
    source_train_manifest: pd.DataFrame,
    target_train_manifest: pd.DataFrame,
    ingestion: dict[str, Any],
) -> Figure:
    """Samples of both domains with their labels in the Cityscapes palette.

    Source-only runs (no target-train images) show the source alone.
    """
    settings = parse(IngestionSettings, ingestion, "ingestion")
    manifests = {"source": source_train_manifest, "target": target_train_manifest}
    return samples_figure(
        {domain: manifest for domain, manifest in manifests.items() if len(manifest)},
        settings.samples_per_domain,
    )
