"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

import warnings

from hrda_kedro.datasets.atomic_files import use_atomic_local_writes
from hrda_kedro.hooks import LauncherHooks, ProjectHooks, TrackingHooks

# Harmless third-party warnings that every run printed (14 lines each) before the first node:
# Kedro's config loader calls an OmegaConf API that OmegaConf has deprecated; `--pipeline`
# still works (the README notes the newer `--pipelines`). Filtered by message, so any other
# warning still shows. Set here because Kedro imports the settings before it runs a command.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
warnings.filterwarnings("ignore", message=r"Option '--pipeline' is deprecated")

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
