"""Project settings and hooks: importing the settings does nothing; a run sets itself up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.pipeline import Node

from hrda_kedro import run_config
from hrda_kedro.datasets.atomic_files import AtomicLocalFileSystem
from hrda_kedro.hooks import ProjectHooks
from tests.conftest import TINY_PARAMS

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROTOCOLS = ("file", "local")


def test_importing_the_settings_leaves_fsspec_and_the_registry_untouched() -> None:
    probe = (
        "import fsspec\n"
        "before = {p: fsspec.get_filesystem_class(p) for p in ('file', 'local')}\n"
        "import hrda_kedro.settings\n"
        "from hrda_kedro import run_config\n"
        "after = {p: fsspec.get_filesystem_class(p) for p in ('file', 'local')}\n"
        "print(after == before, sorted({c.__name__ for c in after.values()}),\n"
        "      run_config._config_loader is None)\n"
    )
    environ = {**os.environ, "PYTHONPATH": SRC, "KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environ
    )
    assert result.stdout.split("\n")[-2] == "True ['LocalFileSystem'] True"


@pytest.fixture
def plain_local_files() -> Iterator[None]:
    """fsspec's own local file system, as in a new process; restored afterwards."""
    before = {p: fsspec.get_filesystem_class(p) for p in PROTOCOLS}
    for protocol in PROTOCOLS:
        fsspec.register_implementation(protocol, LocalFileSystem, clobber=True)
    yield
    for protocol, cls in before.items():
        fsspec.register_implementation(protocol, cls, clobber=True)


@pytest.mark.usefixtures("plain_local_files")
def test_every_node_run_makes_local_writes_atomic() -> None:
    """Also in ParallelRunner's spawned workers, which create no context."""
    ProjectHooks().before_node_run(node=Node(len, "x", "y"), catalog=None)
    assert all(fsspec.get_filesystem_class(p) is AtomicLocalFileSystem for p in PROTOCOLS)


@pytest.mark.usefixtures("plain_local_files")
def test_a_session_saves_every_catalog_file_atomically(
    project_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    atomic: list[str] = []
    real_open = AtomicLocalFileSystem._open

    def spy(self: AtomicLocalFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode == "wb":
            atomic.append(Path(path).name)
        return real_open(self, path, mode, **kwargs)

    monkeypatch.setattr(AtomicLocalFileSystem, "_open", spy)
    bootstrap_project(project_copy)
    try:
        with KedroSession.create(project_path=project_copy, runtime_params=TINY_PARAMS) as session:
            session.run(pipeline_names=["ingestion"])
    finally:
        run_config.use_config_loader(None)
    assert set(atomic) >= {
        "source_train_manifest.csv",
        "target_train_manifest.csv",
        "target_val_manifest.csv",
        "source_class_pixel_counts.csv",
        "source_class_frequencies.csv",
        "ingestion_report.json",
        "ingestion_samples.png",
    }


def test_a_params_key_into_a_mapping_with_integer_yaml_keys_is_one_parameter_error(
    tmp_path: Path,
) -> None:
    """OmegaConf refuses to merge the string key of ``--params`` into a ``class_map`` whose
    YAML keys are integers; the run stops with the key and the fix, not a traceback."""
    from kedro.config import OmegaConfigLoader

    from hrda_kedro.params import ParameterError

    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text(
        "ingestion_datasets:\n  target_val:\n    class_map: {1: road, 2: sidewalk}\n"
    )
    loader = OmegaConfigLoader(
        str(tmp_path),
        **run_config.CONFIG_LOADER_ARGS,
        runtime_params={"ingestion_datasets": {"target_val": {"class_map": {"2": "car"}}}},
    )
    run_config.use_config_loader(loader)
    try:
        with pytest.raises(
            ParameterError,
            match=r"parameter ingestion_datasets\.target_val\.class_map\.2: .*quoted strings",
        ):
            run_config.run_parameters()
    finally:
        run_config.use_config_loader(None)
