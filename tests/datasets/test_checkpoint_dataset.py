"""A checkpoint a run needs and nobody saved: one message naming the folder, before any node."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io.core import DatasetError, Version

from hrda_kedro.data import MissingInputError
from hrda_kedro.datasets.checkpoint_dataset import CheckpointDataset

SAVED = "2026-01-01T00.00.00.000Z"


def checkpoint(folder: Path, load: str | None = None) -> CheckpointDataset:
    return CheckpointDataset(filepath=str(folder / "model.pt"), version=Version(load, None))


def save(folder: Path) -> None:
    CheckpointDataset(filepath=str(folder / "model.pt"), version=Version(None, SAVED)).save(
        {"model": {}}
    )


def load_error(dataset: CheckpointDataset) -> str:
    """The message of our error under the ``DatasetError`` Kedro wraps every load error in
    (the command line shows ours: tests/reliability/test_second_round_faults.py)."""
    with pytest.raises(DatasetError) as raised:
        dataset.load()
    assert isinstance(raised.value.__cause__, MissingInputError)
    return str(raised.value.__cause__)


def test_a_model_never_saved_is_named_with_where_it_was_looked_for(tmp_path: Path) -> None:
    assert load_error(checkpoint(tmp_path)) == (
        f"{tmp_path}/model.pt: no checkpoint saved here yet (expected "
        f"{tmp_path}/model.pt/<timestamp>/model.pt)"
    )


def test_a_pinned_version_that_was_never_saved_lists_the_saved_ones(tmp_path: Path) -> None:
    save(tmp_path)
    assert checkpoint(tmp_path).load()["model"] == {}
    assert checkpoint(tmp_path, load=SAVED).load()["model"] == {}
    assert load_error(checkpoint(tmp_path, load="2020")).endswith(
        f"model.pt: no saved version '2020' (--load-versions); saved: {SAVED}"
    )
