"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/).

Importing this module changes nothing in the process: what a run needs set up (atomic
local writes, the registry's view of the run's parameters) is done by the hooks.
"""

from hrda_kedro.hooks import LauncherHooks, ProjectHooks, ProjectRootHooks, TrackingHooks
from hrda_kedro.interrupted_runs import InterruptedRunHooks
from hrda_kedro.run_config import CONFIG_LOADER_ARGS

HOOKS = (
    ProjectHooks(),
    LauncherHooks(),
    TrackingHooks(),
    ProjectRootHooks(),
    InterruptedRunHooks(),
)

__all__ = ["CONFIG_LOADER_ARGS", "HOOKS"]
