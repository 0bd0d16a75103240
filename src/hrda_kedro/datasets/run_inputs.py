"""The datasets a run reads and does not make must exist before its first node runs.

Kedro loads a node's inputs when the node starts, so a model not trained or a manifest
not ingested yet stopped a run after the nodes before it, in Kedro's traceback of 200+
lines. The run-start hook checks them all first (``hooks.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kedro.io import MemoryDataset
from kedro.io.core import AbstractDataset
from kedro.pipeline import Pipeline

from hrda_kedro.data import MissingInputError
from hrda_kedro.datasets.checkpoint_dataset import CheckpointDataset

# Composite pipelines: a dataset is better described by the smallest one that makes it.
_COMPOSITES = ("__default__", "uda")


def _made_by(name: str, pipelines: Mapping[str, Pipeline]) -> str:
    """``; made by kedro run --pipeline=X`` for the first pipeline that writes ``name``."""
    makers = sorted(
        (n for n, pipeline in pipelines.items() if name in pipeline.all_outputs()),
        key=lambda n: (n in _COMPOSITES, n),
    )
    return f"; made by kedro run --pipeline={makers[0]}" if makers else ""


def _location(dataset: AbstractDataset) -> str:
    described = dataset._describe()  # the path under whichever key the dataset uses
    for key in ("filepath", "path"):
        if described.get(key):
            return str(described[key])
    return type(dataset).__name__


def _checks_existence(dataset: AbstractDataset) -> bool:
    """Datasets that can tell: Kedro's default ``_exists`` only warns and says no."""
    own = type(dataset)._exists is not AbstractDataset._exists
    return own and not isinstance(dataset, MemoryDataset)


def check_run_inputs(
    inputs: Iterable[str], catalog: Any, pipelines: Mapping[str, Pipeline]
) -> None:
    """Stop with a :class:`MissingInputError` naming the first input dataset that was never
    saved (for a checkpoint: the version asked for) and the pipeline that makes it."""
    for name in sorted(inputs):
        if name == "parameters" or name.startswith("params:") or name not in catalog:
            continue
        dataset = catalog.get(name)
        if isinstance(dataset, CheckpointDataset):
            try:
                dataset.check_loadable()
            except MissingInputError as err:
                raise MissingInputError(f"{name}: {err}{_made_by(name, pipelines)}") from err
        elif _checks_existence(dataset) and not dataset.exists():
            raise MissingInputError(
                f"{name}: {_location(dataset)} not found{_made_by(name, pipelines)}"
            )
