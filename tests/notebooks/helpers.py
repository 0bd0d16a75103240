"""Running a notebook of notebooks/ headless in a test project, as a user opens it there."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT


def execute_in(project: Path, name: str) -> nbformat.NotebookNode:
    """``notebooks/<name>`` copied into ``project/notebooks`` and executed there; raises
    ``CellExecutionError`` on the first failing cell."""
    folder = project / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "notebooks" / name, folder)
    notebook = nbformat.read(folder / name, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return notebook
