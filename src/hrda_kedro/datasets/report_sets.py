"""Outputs saved together are loaded together: never the latest of two different runs.

A node's versioned outputs (the mIoU table, per-class IoU and summary JSON; a pseudo-label
quality table and its figure) are saved one after the other under one version: the run's
timestamp. A run killed between two of those saves leaves "latest" versions from two runs
side by side, and a later ``--tags reports`` would draw figures from the mix. Before a run
loads any member of such a set, every member's latest version must be the same one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kedro.io.core import AbstractVersionedDataset, VersionNotFoundError

from hrda_kedro.data import DataError


def saved_together(pipelines: Iterable[Any]) -> list[frozenset[str]]:
    """The output sets (of two or more datasets) of every node of ``pipelines``."""
    sets = {frozenset(node.outputs) for pipeline in pipelines for node in pipeline.nodes}
    return [s for s in sets if len(s) > 1]


def _latest_version(catalog: Any, name: str) -> str | None:
    dataset = catalog.get(name) if name in catalog else None
    if not isinstance(dataset, AbstractVersionedDataset):
        return None
    try:
        return dataset.resolve_load_version()
    except VersionNotFoundError:
        return None  # never saved: nothing to mix up


def check_report_sets(loaded: Iterable[str], sets: Iterable[frozenset[str]], catalog: Any) -> None:
    """Stop before a run loads a dataset whose set's latest versions come from several runs."""
    loaded = set(loaded)
    for members in sets:
        if not members & loaded:
            continue
        versions = {name: _latest_version(catalog, name) for name in sorted(members)}
        found = {v for v in versions.values() if v is not None}
        if len(found) > 1:
            listing = ", ".join(
                f"{name} {version}" for name, version in versions.items() if version
            )
            raise DataError(
                f"{', '.join(sorted(members & loaded))}: the latest saved versions of the "
                f"outputs saved together come from different runs ({listing}): a run stopped "
                "between two saves; expected one run's set: re-run the node that writes them "
                "(e.g. kedro run --pipeline=evaluation)"
            )
