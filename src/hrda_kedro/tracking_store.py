"""Where a session's MLflow store is: in its project, whatever the working directory.

``conf/base/mlflow.yml`` names the store ``sqlite:///mlflow.db``. kedro-mlflow makes a
relative *path* absolute in the project, but passes a URI on as it is, and SQLite opens a
relative one from the process's working directory: a session started from ``notebooks/``
would track into ``notebooks/mlflow.db``. MLflow also keeps one store, and one database
engine, per URI for the life of the process: a second project's session in the same
process (a notebook, the tests) would log into the first project's database. So the URI
is made absolute in the project before kedro-mlflow reads it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException

_SQLITE = "sqlite:///"


def anchor_store(config_loader: Any, project_path: Path) -> None:
    """Before kedro-mlflow's hook: a relative ``sqlite:///`` tracking URI in mlflow.yml, in
    ``project_path``; the session's loader returns the anchored configuration from then on."""
    if importlib.util.find_spec("kedro_mlflow") is None:
        return
    try:
        conf = config_loader["mlflow"]
    except MissingConfigException:
        return
    uri = (conf.get("server") or {}).get("mlflow_tracking_uri") or ""
    path = uri.removeprefix(_SQLITE)
    if uri.startswith(_SQLITE) and path and not Path(path).is_absolute():
        conf["server"]["mlflow_tracking_uri"] = _SQLITE + (Path(project_path) / path).as_posix()
        config_loader["mlflow"] = conf
