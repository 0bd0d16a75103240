"""Where a session's MLflow store is: in its project, whatever the working directory.

``conf/base/mlflow.yml`` names the store ``sqlite:///mlflow.db``. kedro-mlflow makes a
relative *path* absolute in the project, but passes a URI on as it is, and SQLite opens a
relative one from the process's working directory: a session started from ``notebooks/``
would track into ``notebooks/mlflow.db``. MLflow also keeps one store, and one database
engine, per URI for the life of the process: a second project's session in the same
process (a notebook, the tests) would log into the first project's database. So the URI
is made absolute in the project before kedro-mlflow reads it.

On several machines only node 0 tracks. The other nodes start at the same moment and would
each create the empty database at once, and SQLite's schema migration of all but one fails
(the node stops at start); they get a throwaway store of their own instead, and discard the
run kedro-mlflow opens there (:class:`hrda_kedro.hooks.LauncherHooks`).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
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
    if _node_rank() > 0:
        private = Path(tempfile.mkdtemp(prefix="hrda-node-mlflow-")) / "mlflow.db"
        atexit.register(shutil.rmtree, private.parent, ignore_errors=True)
        conf.setdefault("server", {})["mlflow_tracking_uri"] = _SQLITE + private.as_posix()
        config_loader["mlflow"] = conf
    elif uri.startswith(_SQLITE) and path and not Path(path).is_absolute():
        conf["server"]["mlflow_tracking_uri"] = _SQLITE + (Path(project_path) / path).as_posix()
        config_loader["mlflow"] = conf


def _node_rank() -> int:
    """This machine's node rank (0 on one machine; a launcher error is reported later, by
    the run-start hook)."""
    from hrda_kedro.launch import LauncherError, detect_cluster

    try:
        return detect_cluster(os.environ).node_rank
    except LauncherError:
        return 0
