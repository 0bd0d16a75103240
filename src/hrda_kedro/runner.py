"""``kedro run --runner=hrda_kedro.runner.ParallelRunner``: Kedro's ``ParallelRunner``,
whose spawned workers load the project's settings, hence its hooks, before their first node,
with the checks the run's first training node makes (``hooks.deferred_checks``).

Kedro 1.7 reads the project's package name inside each worker, where a spawned (or
forkserver) process has none: it then registers only the plugins' hooks (kedro-mlflow's),
none of ``settings.HOOKS``, so no project hook runs there (atomic writes, tracking). A
forked worker (Linux's default up to Python 3.13) inherits the configured project.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from kedro.framework import project
from kedro.runner import ParallelRunner as KedroParallelRunner

from hrda_kedro.hooks import defer_checks, deferred_checks
from hrda_kedro.parent_watch import exit_with_parent


class ParallelRunner(KedroParallelRunner):
    def _get_executor(self, max_workers: int) -> Executor:
        """Kedro's pool, with the start method it chose, plus an initializer in each worker
        that loads the project's settings and the run's checks still to make (a forked
        worker inherits both)."""
        pool = super()._get_executor(max_workers)
        context = pool._mp_context  # type: ignore[attr-defined]  # KEDRO_MP_CONTEXT's
        if context.get_start_method() == "fork" or project.PACKAGE_NAME is None:
            return pool
        pool.shutdown()  # no worker started yet
        return ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=context,
            initializer=load_settings,
            initargs=(project.PACKAGE_NAME, deferred_checks()),
        )


def load_settings(package_name: str, checks: dict[str, dict[str, Any]]) -> None:
    """In a worker: the project's settings, not all of Kedro's ``configure_project``. With
    the package name set there, Kedro 1.7's worker also reconfigures logging with its own
    logging object, and its second node fails (RecursionError). The worker ends when the
    run's process does (:func:`~hrda_kedro.parent_watch.exit_with_parent`)."""
    project.settings.configure(f"{package_name}.settings")
    defer_checks(checks)
    exit_with_parent(os.getppid())  # a forked one: run_lock's at-fork handler
