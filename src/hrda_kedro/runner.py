"""``kedro run --runner=hrda_kedro.runner.ParallelRunner``: Kedro's ``ParallelRunner``,
whose spawned workers load the project's settings, hence its hooks, before their first node.

Kedro 1.7 reads the project's package name inside each worker, where a spawned (or
forkserver) process has none: it then registers only the plugins' hooks (kedro-mlflow's),
none of ``settings.HOOKS``, so no project hook runs there (atomic writes, tracking). A
forked worker (Linux's default up to Python 3.13) inherits the configured project.
"""

from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor

from kedro.framework import project
from kedro.runner import ParallelRunner as KedroParallelRunner


class ParallelRunner(KedroParallelRunner):
    def _get_executor(self, max_workers: int) -> Executor:
        """Kedro's pool, with the start method it chose, plus an initializer in each worker
        that loads the project's settings."""
        pool = super()._get_executor(max_workers)
        context = pool._mp_context  # type: ignore[attr-defined]  # KEDRO_MP_CONTEXT's
        if context.get_start_method() == "fork" or project.PACKAGE_NAME is None:
            return pool
        pool.shutdown()  # no worker started yet
        return ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=context,
            initializer=load_settings,
            initargs=(project.PACKAGE_NAME,),
        )


def load_settings(package_name: str) -> None:
    """In a worker: the project's settings, not all of Kedro's ``configure_project``. With
    the package name set there, Kedro 1.7's worker also reconfigures logging with its own
    logging object, and its second node fails (RecursionError)."""
    project.settings.configure(f"{package_name}.settings")
