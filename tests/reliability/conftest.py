"""Shared projects: one uninterrupted tiny ``uda`` run that the other tests copy and break."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.helpers import copy_project, kedro, make_project


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project after a complete, uninterrupted ``kedro run`` (the default ``uda``)."""
    project = make_project(tmp_path_factory.mktemp("reference") / "project")
    result = kedro(project)
    assert result.returncode == 0, result.stdout[-5000:]
    return project


@pytest.fixture
def trained(reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the reference project, as the working directory.

    Manifests in the copy still list the reference's image files (absolute paths); tests
    that damage images re-run ingestion in the copy first.
    """
    project = copy_project(reference, tmp_path / "project")
    monkeypatch.chdir(project)
    return project
