"""A run interrupted in a notebook ends as a failed run when its cell ends.

The kernel's interrupt raises ``KeyboardInterrupt`` in ``session.run``, which Kedro's session
lets pass without any end-of-run hook (it catches ``Exception`` only). In a ``kedro run``
process that is harmless: the process ends, and the kernel drops its run lock. A notebook's
kernel lives on, and kept the project's run lock (every ``kedro run`` elsewhere was refused,
naming the idle kernel), the working directory of the run and, with the ``mlflow`` extra, an
MLflow run left open that the next run in the kernel nested into. So when the cell that ran
the pipeline ends, a run that neither finished nor failed gets ``on_pipeline_error`` from
every hook (ours and the plugins'), as any other failed run does.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class RunInterruptedError(Exception):
    """What the end-of-run hooks of an interrupted run are told the error was."""


def _notebook_shell() -> Any:
    """The IPython shell this process runs in, or None; IPython is not imported for it."""
    ipython = sys.modules.get("IPython")
    return None if ipython is None else ipython.get_ipython()


class InterruptedRunHooks:
    """Remembers the open run of a notebook cell and ends it if the cell ends first."""

    def __init__(self) -> None:
        self._hook_manager: Any = None
        self._open_run: dict[str, Any] | None = None
        self._watched_shell: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        # The session's plugin manager: Kedro hands it to the context, not to run hooks.
        self._hook_manager = getattr(context, "_hook_manager", None)

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Last, so only a run whose start hooks all passed is remembered: a run refused
        there gets no end-of-run hook from Kedro, and its refusing hook cleaned up."""
        shell = _notebook_shell()
        if shell is None or self._hook_manager is None:
            return
        self._open_run = {
            "hooks": self._hook_manager,
            "run_params": run_params,
            "pipeline": pipeline,
            "catalog": catalog,
        }
        if self._watched_shell is not shell:
            shell.events.register("post_run_cell", self._end_if_interrupted)
            self._watched_shell = shell

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._open_run = None

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._open_run = None

    def _end_if_interrupted(self, result: Any = None) -> None:
        """IPython's ``post_run_cell``: the cell is over, so is any run it started."""
        open_run, self._open_run = self._open_run, None
        if open_run is None:
            return
        names = ",".join(open_run["run_params"].get("pipeline_names") or ["__default__"])
        error = getattr(result, "error_in_exec", None)
        how = type(error).__name__ if error is not None else "its cell ended"
        logger.warning(
            "run of pipeline %s stopped (%s): ending it as a failed run (run lock released, "
            "tracking run closed); finished outputs are kept, training resumes from its last "
            "checkpoint",
            names,
            how,
        )
        hooks = open_run.pop("hooks")
        hooks.hook.on_pipeline_error(
            error=RunInterruptedError(f"run of pipeline {names} stopped ({how})"), **open_run
        )
