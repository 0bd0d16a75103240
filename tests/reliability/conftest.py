"""The shared finished project (``reference``, tests/conftest.py), copied for each test
that breaks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.helpers import copy_project


@pytest.fixture
def trained(reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the reference project, as the working directory.

    Manifests in the copy still list the reference's image files (absolute paths); tests
    that damage images re-run ingestion in the copy first.
    """
    project = copy_project(reference, tmp_path / "project")
    monkeypatch.chdir(project)
    return project
