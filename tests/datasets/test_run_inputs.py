"""A run whose inputs were never made stops before its first node, naming the first one."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import Version
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pandas import CSVDataset

from hrda_kedro.data import MissingInputError
from hrda_kedro.datasets.checkpoint_dataset import CheckpointDataset
from hrda_kedro.datasets.run_inputs import check_run_inputs


def _node(inputs: list[str], output: str) -> Node:
    return Node(lambda *args: None, inputs=inputs or None, outputs=output, name=output)


# The registry's shape: each dataset made by a small pipeline and by the composite ``uda``.
INGESTION = Pipeline([_node([], "manifest")])
WARMUP = Pipeline([_node(["manifest"], "source_only_model")])
PIPELINES = {"uda": INGESTION + WARMUP, "ingestion": INGESTION, "warmup": WARMUP}
INPUTS = {"manifest", "source_only_model", "params:warmup", "parameters", "in_memory"}


@pytest.fixture
def catalog(tmp_path: Path) -> DataCatalog:
    return DataCatalog(
        {
            "manifest": CSVDataset(filepath=str(tmp_path / "manifest.csv")),
            "source_only_model": CheckpointDataset(
                filepath=str(tmp_path / "model.pt"), version=Version(None, None)
            ),
            "params:warmup": MemoryDataset({}),
            "in_memory": MemoryDataset(),  # nothing to check on disk
        }
    )


def test_each_missing_input_is_named_with_the_pipeline_that_makes_it(
    catalog: DataCatalog, tmp_path: Path
) -> None:
    with pytest.raises(MissingInputError) as raised:
        check_run_inputs(INPUTS, catalog, PIPELINES)
    assert str(raised.value) == (
        f"manifest: {tmp_path}/manifest.csv not found; made by kedro run --pipeline=ingestion"
    )
    (tmp_path / "manifest.csv").write_text("a\n1\n")
    with pytest.raises(MissingInputError) as raised:
        check_run_inputs(INPUTS, catalog, PIPELINES)
    assert str(raised.value) == (
        f"source_only_model: {tmp_path}/model.pt: no checkpoint saved here yet (expected "
        f"{tmp_path}/model.pt/<timestamp>/model.pt); made by kedro run --pipeline=warmup"
    )
    catalog.save("source_only_model", {"model": {}})
    check_run_inputs(INPUTS, catalog, PIPELINES)  # everything made: the run goes on


def test_an_input_no_pipeline_makes_is_named_alone(catalog: DataCatalog, tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r"^manifest: \S+manifest.csv not found$"):
        check_run_inputs({"manifest"}, catalog, {})
