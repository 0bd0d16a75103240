"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

from hrda_kedro.datasets.atomic_files import use_atomic_local_writes
from hrda_kedro.hooks import LauncherHooks, ProjectHooks, TrackingHooks

# A full disk or a crash mid-save must not leave a truncated report under its real name.
use_atomic_local_writes()

HOOKS = (ProjectHooks(), LauncherHooks(), TrackingHooks())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (gta2cs, synthia2cs, local) state only what differs from base: nested
    # parameter keys are merged, not replaced whole.
    "merge_strategy": {"parameters": "soft"},
}
