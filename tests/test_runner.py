"""The project's ParallelRunner: its spawned workers run the project's hooks."""

from __future__ import annotations

import pytest
from kedro.framework import project

from hrda_kedro.runner import ParallelRunner


def _hooks_in_worker() -> list[str]:
    from kedro.framework.project import settings

    return [type(hook).__name__ for hook in settings.HOOKS]


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_workers_load_the_project_hooks(monkeypatch: pytest.MonkeyPatch, start_method) -> None:
    """Kedro's own runner: ``[]`` in a spawned worker (no project configured there)."""
    monkeypatch.setattr(project, "PACKAGE_NAME", project.PACKAGE_NAME)  # restored after
    project.configure_project("hrda_kedro")
    monkeypatch.setenv("KEDRO_MP_CONTEXT", start_method)
    with ParallelRunner(max_workers=1)._get_executor(1) as pool:
        hooks = pool.submit(_hooks_in_worker).result()
    assert hooks == ["ProjectHooks", "LauncherHooks", "TrackingHooks"]
