"""The MLflow store of a session is in its project, whatever the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from hrda_kedro.run_config import CONFIG_LOADER_ARGS
from hrda_kedro.tracking_store import anchor_store

pytest.importorskip("kedro_mlflow")


def _loader(conf: Path, uri: str | None) -> OmegaConfigLoader:
    for env in ("base", "local"):
        (conf / env).mkdir(parents=True, exist_ok=True)
    if uri is not None:
        server = {"server": {"mlflow_tracking_uri": uri}, "ui": {"port": "5000"}}
        (conf / "base" / "mlflow.yml").write_text(yaml.safe_dump(server))
    return OmegaConfigLoader(conf_source=str(conf), **CONFIG_LOADER_ARGS)


@pytest.mark.parametrize(
    ("uri", "anchored"),
    [
        ("sqlite:///mlflow.db", "sqlite:///{project}/mlflow.db"),
        ("sqlite:///runs/mlflow.db", "sqlite:///{project}/runs/mlflow.db"),
        ("sqlite:////srv/mlflow.db", "sqlite:////srv/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("mlruns", "mlruns"),  # a path: kedro-mlflow anchors it itself
    ],
)
def test_a_relative_sqlite_uri_is_anchored_in_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str, anchored: str
) -> None:
    project = tmp_path / "project"
    loader = _loader(project / "conf", uri)
    monkeypatch.chdir(tmp_path)  # elsewhere: a notebook's folder
    anchor_store(loader, project)
    conf = loader["mlflow"]
    assert conf["server"]["mlflow_tracking_uri"] == anchored.format(project=project.as_posix())
    assert conf["ui"] == {"port": "5000"}  # the rest of mlflow.yml as it was


def test_without_mlflow_yml_nothing_changes(tmp_path: Path) -> None:
    loader = _loader(tmp_path / "conf", None)
    anchor_store(loader, tmp_path)
    assert "mlflow" not in loader


def test_a_node_after_the_first_tracks_into_a_private_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes > 0 start with node 0: creating the shared database at once fails for all
    but one; their runs are discarded anyway."""
    project = tmp_path / "project"
    loader = _loader(project / "conf", "sqlite:///mlflow.db")
    for name, value in {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", "29500")
    anchor_store(loader, project)
    uri = loader["mlflow"]["server"]["mlflow_tracking_uri"]
    assert uri.startswith("sqlite:///") and uri.endswith("/mlflow.db")
    assert not Path(uri.removeprefix("sqlite:///")).is_relative_to(project)
