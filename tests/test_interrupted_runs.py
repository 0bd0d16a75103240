"""A run interrupted in a notebook ends as a failed run when its cell ends: its run lock,
working directory and tracking run do not outlive it in the kernel."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from hrda_kedro.hrda.training.trainer import Trainer
from tests.reliability.helpers import copy_project
from tests.test_run_lock import other_process_acquires


def notebook_cell(pipeline: str) -> str:
    """A notebook cell that runs ``pipeline`` of the project ``PROJECT`` with ``PARAMS``."""
    return (
        "from kedro.framework.session import KedroSession\n"
        "from kedro.framework.startup import bootstrap_project\n"
        "bootstrap_project(PROJECT)\n"
        "session = KedroSession.create(project_path=PROJECT, runtime_params=PARAMS)\n"
        f"session.run(pipeline_names=[{pipeline!r}])\n"
    )


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt  # what the kernel's interrupt raises in the running cell


@pytest.mark.slow
def test_an_interrupted_notebook_run_releases_the_project(
    reference: Path,
    tmp_path: Path,
    notebook_shell: InteractiveShell,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kedro's session ends a run with hooks only for an ``Exception``; an interrupted cell
    kept the lock until the kernel restarted and every ``kedro run`` elsewhere was refused."""
    project = copy_project(reference, tmp_path / "project")
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a notebook runs in its own folder
    monkeypatch.setattr(Trainer, "run", interrupt)
    notebook_shell.user_ns["PROJECT"] = project
    with caplog.at_level(logging.WARNING):
        result = notebook_shell.run_cell(notebook_cell("warmup"))
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert other_process_acquires(project)
    assert Path.cwd() == elsewhere
    assert "run of pipeline warmup stopped (KeyboardInterrupt): ending it as a failed run" in (
        caplog.text
    )

    monkeypatch.undo()  # the next run in the same kernel goes through
    monkeypatch.chdir(elsewhere)
    notebook_shell.user_ns["PROJECT"] = project
    caplog.clear()
    result = notebook_shell.run_cell(notebook_cell("evaluation"))
    assert result.error_in_exec is None, result.error_in_exec
    assert "ending it as a failed run" not in caplog.text
    assert other_process_acquires(project)
    assert Path.cwd() == elsewhere
