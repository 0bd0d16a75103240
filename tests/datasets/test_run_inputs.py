"""A run whose inputs were never made stops before its first node, naming the first one."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import Version
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pandas import CSVDataset

from hrda_kedro.data import MissingInputError
from hrda_kedro.datasets.checkpoint_dataset import CheckpointDataset
from hrda_kedro.datasets.run_inputs import check_manifest_origins, check_run_inputs
from tests.conftest import PROJECT_ROOT


def _node(inputs: list[str], output: str) -> Node:
    return Node(lambda *args: None, inputs=inputs or None, outputs=output, name=output)


# The registry's shape: each dataset made by a small pipeline and by the composite ``uda``.
INGESTION = Pipeline([_node([], "manifest")])
WARMUP = Pipeline([_node(["manifest"], "source_only_model")])
STUDY = INGESTION + Pipeline([_node(["manifest"], "study_model"), _node([], "table")])
PIPELINES = {
    "uda": INGESTION + WARMUP,
    "ablations": STUDY,  # sorts first, makes the manifest too, with more nodes
    "ingestion": INGESTION,
    "warmup": WARMUP,
}
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
        f"manifest: {tmp_path}/manifest.csv not found; made by kedro run --pipeline=ingestion "
        "(1 more input not made yet)"
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


def test_an_input_no_pipeline_makes_is_left_to_its_own_checks(catalog: DataCatalog) -> None:
    """The user's data (a folder of images to segment): its reader says what belongs there."""
    check_run_inputs({"manifest"}, catalog, {})


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env=env)
    return loader["parameters"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("local", None),  # the environment that wrote it: a copied project's paths included
        ("cs2acdc", r"target_val_manifest: lists embedded images, but this run's "
         r"ingestion_datasets.target_val reads acdc images \(another environment's ingestion\)"),
        ("cityscapes_camera", r"target_val_manifest: lists embedded images such as \S+/data/"
         r"01_raw/embedded/target_val/images/00000.png, but this run's ingestion_datasets."
         r"target_val reads the embedded images of data/01_raw/embedded_focal_1.1"),
    ],
)  # fmt: skip
def test_a_manifest_of_another_environments_data_is_refused(
    tmp_path: Path, env: str, message: str | None
) -> None:
    """A paper recipe's evaluation must not score the embedded benchmark's manifest."""
    manifest = tmp_path / "target_val_manifest.csv"
    copied = tmp_path / "copy" / "data" / "01_raw" / "embedded" / "target_val" / "images"
    manifest.write_text(f"image_path,dataset\n{copied}/00000.png,embedded\n")
    catalog = DataCatalog({"target_val_manifest": CSVDataset(filepath=str(manifest))})
    inputs = {"target_val_manifest", "round_1.model"}
    if message is None:
        check_manifest_origins(inputs, catalog, _parameters(env))
        return
    with pytest.raises(MissingInputError, match=message):
        check_manifest_origins(inputs, catalog, _parameters(env))
    check_manifest_origins({"round_1.model"}, catalog, _parameters(env))  # not read: no check


def test_the_input_named_first_is_the_one_made_first(tmp_path: Path) -> None:
    """A model whose name sorts before its training data's: the message names the data and
    ingestion, the command to run first (it named the model and self_training)."""
    ingestion = Pipeline([_node([], "source_train_manifest")])
    training = Pipeline([_node(["source_train_manifest"], "round_1.model")])
    catalog = DataCatalog(
        {
            "source_train_manifest": CSVDataset(filepath=str(tmp_path / "manifest.csv")),
            "round_1.model": CheckpointDataset(
                filepath=str(tmp_path / "model.pt"), version=Version(None, None)
            ),
        }
    )
    pipelines = {"__default__": ingestion + training, "self_training": training,
                 "ingestion": ingestion}  # fmt: skip
    with pytest.raises(MissingInputError, match=r"^source_train_manifest: .*ingestion \(1 more"):
        check_run_inputs({"round_1.model", "source_train_manifest"}, catalog, pipelines)


@pytest.mark.parametrize(
    ("extra_targets", "message"),
    [
        ({"night": {"kind": "embedded", "subset": "target_val_night"}}, None),
        ({}, r"^extra_targets_manifest: lists the targets night \(embedded\), but this run's "
         r"ingestion_datasets.extra_targets names none; made by kedro run --pipeline=ingestion"),
        ({"night": {"kind": "embedded", "subset": "target_val_night"},
          "dusk": {"kind": "embedded", "subset": "target_val_night"}},
         r"names dusk \(embedded\), night \(embedded\);"),
        ({"night": {"kind": "cityscapes", "root": "data/cs", "subset": "val"}},
         r"lists the targets night \(embedded\), but .* names night \(cityscapes\);"),
    ],
)  # fmt: skip
def test_the_extra_targets_manifest_must_hold_this_runs_targets(
    tmp_path: Path, extra_targets: dict, message: str | None
) -> None:
    """An evaluation-only run after targets were added or removed once scored the last
    ingestion's targets without a word."""
    manifest = tmp_path / "extra_targets_manifest.csv"
    manifest.write_text("image_path,dataset,split\na.png,embedded,night\nb.png,embedded,night\n")
    catalog = DataCatalog({"extra_targets_manifest": CSVDataset(filepath=str(manifest))})
    parameters = _parameters("local")
    parameters["ingestion_datasets"]["extra_targets"] = extra_targets
    inputs = {"extra_targets_manifest", "round_1.model"}
    if message is None:
        check_manifest_origins(inputs, catalog, parameters)
        return
    with pytest.raises(MissingInputError, match=message):
        check_manifest_origins(inputs, catalog, parameters)
    check_manifest_origins({"round_1.model"}, catalog, parameters)  # not read: no check


def test_an_empty_extra_targets_manifest_fits_a_run_without_extra_targets(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "extra_targets_manifest.csv"
    manifest.write_text("image_path,dataset,split\n")
    catalog = DataCatalog({"extra_targets_manifest": CSVDataset(filepath=str(manifest))})
    check_manifest_origins({"extra_targets_manifest"}, catalog, _parameters("local"))
