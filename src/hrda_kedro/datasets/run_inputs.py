"""The datasets a run reads and does not make must exist before its first node runs.

Kedro loads a node's inputs when the node starts, so a model not trained or a manifest
not ingested yet stopped a run after the nodes before it, in Kedro's traceback of 200+
lines. The run-start hook checks them all first (``hooks.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.io import MemoryDataset
from kedro.io.core import AbstractDataset
from kedro.pipeline import Pipeline

from hrda_kedro.data import MissingInputError
from hrda_kedro.datasets.checkpoint_dataset import CheckpointDataset

# Composite pipelines: a dataset is better described by the smallest one that makes it
# (``ablations`` also runs ingestion, with many more nodes).
_COMPOSITES = ("__default__", "uda")


def _maker(name: str, pipelines: Mapping[str, Pipeline]) -> str | None:
    """The smallest registered pipeline that writes ``name``, if one does."""
    makers = sorted(
        (n for n, pipeline in pipelines.items() if name in pipeline.all_outputs()),
        key=lambda n: (n in _COMPOSITES, len(pipelines[n].nodes), n),
    )
    return makers[0] if makers else None


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


def _production_order(pipelines: Mapping[str, Pipeline]) -> dict[str, int]:
    """Each dataset's position in the order the project makes them: the default pipeline's
    topological order first, so that a manifest comes before the model trained on it."""
    order: dict[str, int] = {}
    ordered = [pipelines[n] for n in _COMPOSITES if n in pipelines] + list(pipelines.values())
    for pipeline in ordered:
        for node in pipeline.nodes:  # Kedro lists them in topological order
            for output in node.outputs:
                order.setdefault(output, len(order))
    return order


def _missing(name: str, catalog: Any, made_by: str) -> MissingInputError | None:
    dataset = catalog.get(name)
    if isinstance(dataset, CheckpointDataset):
        try:
            dataset.check_loadable()
        except MissingInputError as err:
            error = MissingInputError(f"{name}: {err}{made_by}")
            error.__cause__ = err
            return error
    elif _checks_existence(dataset) and not dataset.exists():
        return MissingInputError(f"{name}: {_location(dataset)} not found{made_by}")
    return None


def check_run_inputs(
    inputs: Iterable[str], catalog: Any, pipelines: Mapping[str, Pipeline]
) -> None:
    """Stop with a :class:`MissingInputError` naming the input dataset that a pipeline makes
    and that was never saved (for a checkpoint: the version asked for), and that pipeline:
    the earliest in the order the project makes them, with the count of the others, so that
    the command it names is the one to run first. Inputs no pipeline makes (the user's data,
    images to segment) are left to their own checks, whose messages say what belongs there."""
    order = _production_order(pipelines)
    missing = []
    for name in sorted(inputs, key=lambda n: (order.get(n, len(order)), n)):
        if name == "parameters" or name.startswith("params:") or name not in catalog:
            continue
        maker = _maker(name, pipelines)
        if maker is not None:
            error = _missing(name, catalog, f"; made by kedro run --pipeline={maker}")
            missing += [error] if error else []
    if missing:
        more = len(missing) - 1
        others = f" ({more} more input{'s' * (more > 1)} not made yet)" if more else ""
        raise MissingInputError(f"{missing[0]}{others}") from missing[0].__cause__


EXTRA_MANIFEST = "extra_targets_manifest"


def check_manifest_origins(
    inputs: Iterable[str], catalog: Any, parameters: Mapping[str, Any]
) -> None:
    """A split's manifest that the run reads and does not make must list the kind of images
    this run's ``ingestion_datasets`` name (for the embedded benchmark: from the folder
    ``ingestion.embedded.root`` names): another environment's data (a paper recipe's
    evaluation on the embedded benchmark's manifest, one camera's on the other's) would
    otherwise be scored without a word. Folder names, not absolute paths, are compared: a
    copied or moved project keeps its manifests."""
    from hrda_kedro.data.ingest import SPLITS, IngestionDatasets, IngestionSettings
    from hrda_kedro.params import parse

    read = [s for s in SPLITS if f"{s}_manifest" in inputs and f"{s}_manifest" in catalog]
    extra = EXTRA_MANIFEST in inputs and EXTRA_MANIFEST in catalog
    if not (read or extra) or "ingestion_datasets" not in parameters:
        return
    datasets = parse(IngestionDatasets, parameters["ingestion_datasets"], "ingestion_datasets")
    if extra and catalog.exists(EXTRA_MANIFEST):
        _check_extra_targets(catalog.load(EXTRA_MANIFEST), datasets.extra_targets)
    folder = Path(parse(IngestionSettings, parameters.get("ingestion"), "ingestion").embedded.root)
    for split in read:
        spec, name = getattr(datasets, split), f"{split}_manifest"
        if spec is None or not catalog.exists(name):
            continue
        manifest = catalog.load(name)
        kinds = sorted(set(manifest["dataset"].astype(str)))
        elsewhere = [
            p
            for p in manifest["image_path"].astype(str)
            if spec.kind == "embedded" and folder.name not in Path(p).parts
        ]
        if manifest.empty or (kinds == [spec.kind] and not elsewhere):
            continue
        listed = f"{', '.join(kinds)} images" + (f" such as {elsewhere[0]}" if elsewhere else "")
        wanted = (
            f"the embedded images of {folder}" if spec.kind == "embedded" else f"{spec.kind} images"
        )
        raise MissingInputError(
            f"{name}: lists {listed}, but this run's ingestion_datasets.{split} reads "
            f"{wanted} (another environment's ingestion); made by kedro run "
            "--pipeline=ingestion with this run's --env"
        )


def _check_extra_targets(manifest: Any, wanted: Mapping[str, Any]) -> None:
    """The extra targets' manifest must hold the targets, and kinds, that this run's
    ``ingestion_datasets.extra_targets`` names: an evaluation-only run once scored the
    targets of the last ingestion, without a word, after targets were added or removed."""
    listed = (
        {
            str(name): sorted(set(rows["dataset"].astype(str)))
            for name, rows in manifest.groupby("split", sort=True)
        }
        if len(manifest)
        else {}
    )
    named = {name: [spec.kind] for name, spec in sorted(wanted.items())}
    if listed == named:
        return

    def describe(targets: Mapping[str, list[str]]) -> str:
        return ", ".join(f"{n} ({'/'.join(k)})" for n, k in targets.items()) or "none"

    raise MissingInputError(
        f"{EXTRA_MANIFEST}: lists the targets {describe(listed)}, but this run's "
        f"ingestion_datasets.extra_targets names {describe(named)}; made by kedro run "
        "--pipeline=ingestion with this run's --env and --params"
    )
