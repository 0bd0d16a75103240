"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

from hrda_kedro.hooks import ProjectHooks

HOOKS = (ProjectHooks(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (gta2cs, synthia2cs, local) state only what differs from base: nested
    # parameter keys are merged, not replaced whole.
    "merge_strategy": {"parameters": "soft"},
}
