"""The configuration a Kedro run reads: the loader's settings and the run's parameters.

Some parameters shape the graph (the number of rounds, the ablation variants), so the
pipeline registry needs them; Kedro calls ``register_pipelines()`` without arguments,
after its ``after_context_created`` hooks. The project hook hands the session's config
loader over here (:func:`use_config_loader`), so that the graph follows ``--env`` and
``--params``; outside a session (``kedro registry list``), ``./conf`` is read with the same
loader settings. Kept apart from ``settings.py`` and the registry so that neither imports
the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf.errors import KeyValidationError

CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (gta2cs, synthia2cs, local) state only what differs from base: nested
    # parameter keys are merged, not replaced whole.
    "merge_strategy": {"parameters": "soft"},
    # kedro-mlflow's own patterns for mlflow.yml, declared here so that the project's hook
    # can read the file before kedro-mlflow's does (tracking_store.py).
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
}

_config_loader: Any = None


def use_config_loader(config_loader: Any) -> None:
    """Called by the project hook with the active session's configuration."""
    global _config_loader  # noqa: PLW0603 - one active Kedro context per process
    _config_loader = config_loader


def run_parameters() -> Mapping[str, Any]:
    """The run's parameters: the active session's, else ``./conf``'s (``KEDRO_ENV`` over
    base), else none."""
    if _config_loader is not None:
        return _merged_parameters(_config_loader)
    conf = Path(os.environ.get("KEDRO_CONF_SOURCE", Path.cwd() / "conf"))
    if not conf.is_dir():
        return {}
    args = {**CONFIG_LOADER_ARGS, "default_run_env": os.environ.get("KEDRO_ENV", "local")}
    return _merged_parameters(OmegaConfigLoader(conf_source=str(conf), **args))


def _merged_parameters(config_loader: Any) -> Mapping[str, Any]:
    """The loader's parameters; OmegaConf's refusal to merge a ``--params`` key (always a
    string) into a mapping whose YAML keys are integers (a ``class_map``) becomes one
    message naming the key and the fix, not a framed traceback."""
    try:
        return config_loader["parameters"]
    except KeyValidationError as err:
        # Imported here: settings.py imports this module, and params imports torch.
        from hrda_kedro.params import ParameterError

        raise ParameterError(
            f"parameter {err.full_key}: {str(err.msg).splitlines()[0]}; --params gives every "
            "key as a string, so write the keys of this mapping in its YAML file as quoted "
            "strings ('2': car, not 2: car) to override one of them"
        ) from err
