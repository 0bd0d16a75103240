"""Third round of probes: where a run is started from, and which configuration it reads.

A run started in a subfolder of the project (``kedro run`` in ``notebooks/``, a notebook's
``session.run()``) once resolved the parameters' paths against that subfolder while the
catalog's were the root's: it redrew the benchmark and trained again into
``notebooks/data``. ``--conf-source`` with an environment that only it holds was refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hrda_kedro.params import ParameterError
from tests.reliability.helpers import flat, kedro, run_in_process


def _subfolder(project: Path) -> Path:
    folder = project / "notebooks"
    folder.mkdir(exist_ok=True)
    return folder


def test_cli_run_in_a_subfolder_works_in_the_project_root(trained: Path) -> None:
    folder = _subfolder(trained)
    result = kedro(trained, "--pipeline", "ingestion", cwd=folder)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Drew" not in result.stdout  # the root's benchmark is reused, not redrawn here
    assert not (folder / "data").exists()


def test_a_session_started_in_a_subfolder_returns_there(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook's working directory is its own again after a run, and after a run its
    checks stopped."""
    folder = _subfolder(trained)
    monkeypatch.chdir(folder)
    run_in_process(trained, "ingestion")
    assert Path.cwd() == folder
    assert not (folder / "data").exists()
    with pytest.raises(ParameterError, match="domain_shfit"):
        run_in_process(trained, "ingestion", {"ingestion": {"embedded": {"domain_shfit": 1}}})
    assert Path.cwd() == folder


def test_cli_environment_of_another_conf_source(trained: Path, tmp_path: Path) -> None:
    conf = tmp_path / "other conf"
    shutil.copytree(trained / "conf", conf)
    (conf / "alt").mkdir()
    result = kedro(trained, "--conf-source", str(conf), "--env", "alt", "--pipeline", "ingestion")
    assert result.returncode == 0, result.stdout[-3000:]
    result = kedro(trained, "--conf-source", str(conf), "--env", "nosuch")
    assert result.returncode == 2
    assert (
        f"Error: no environment named 'nosuch' (no folder {conf / 'nosuch'}); the "
        "environments are: alt, local"
    ) in flat(result.stdout), result.stdout[-2000:]
