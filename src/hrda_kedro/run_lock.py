"""One writing run per project at a time.

Two ``kedro run`` in one project (a second terminal, a scheduler's requeued job while the
first still runs) share ``data/``: each loads the newest saved version of a model, so the
first run's evaluation scored the second run's models under its own name, and the two
overwrote each other's in-training checkpoints. A run that trains or writes reports holds
an exclusive ``flock`` on ``data/.run.lock`` from its start to its end; the kernel releases
it when the process ends however it ends, so a killed run never leaves a stale lock.
``predict`` and the exports read a saved model and write only their own outputs: they run
beside a training run, one of them at a time (``data/.outputs.lock``): two predict runs
replaced each other's labels and overlays half-way, leaving a folder of both runs' files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from hrda_kedro.parent_watch import exit_with_parent

logger = logging.getLogger(__name__)

LOCK_FILE = Path("data") / ".run.lock"
OUTPUTS_LOCK_FILE = Path("data") / ".outputs.lock"
_HOLDERS = {
    LOCK_FILE: "one run that trains, evaluates or ingests per project at a time",
    OUTPUTS_LOCK_FILE: "one run of predict or an export per project at a time (they may run "
    "beside a training run)",
}


class ProjectBusyError(RuntimeError):
    """Another run is writing this project's data."""


_held: dict[Path, IO[str]] = {}


def acquire(project: Path, pipeline: str, lock: Path = LOCK_FILE) -> None:
    """Hold the project's ``lock`` (:data:`LOCK_FILE` or :data:`OUTPUTS_LOCK_FILE`) for this
    process, or raise :class:`ProjectBusyError` naming the run that holds it. Holding it
    already (a notebook's second run after a stopped one) is fine. Where the file system
    cannot lock (some network mounts) or the platform has no ``flock``, the run goes on
    unprotected, with a warning."""
    path = (project / lock).resolve()
    if path in _held:
        return
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks of this kind
        _unprotected(path, "this platform has no flock")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
    except OSError as err:  # another user's lock file on shared storage, a read-only data/
        _unprotected(path, err)
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = _describe(handle.read())
        handle.close()
        raise ProjectBusyError(
            f"{path}: another kedro run is writing this project's data ({holder}); expected "
            f"{_HOLDERS[lock]}"
        ) from None
    except OSError as err:  # ENOLCK and the like: a mount without a lock manager
        handle.close()
        _unprotected(path, err)
        return
    handle.seek(0)
    handle.truncate()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "pipeline": pipeline}
    handle.write(json.dumps({**holder, "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    handle.flush()
    _held[path] = handle


def release() -> None:
    """Let the lock go (the end of a run); a run that did not take it releases nothing."""
    while _held:
        _, handle = _held.popitem()
        handle.close()  # closing the only descriptor releases the flock


def _in_forked_child() -> None:
    """A process forked during a run (a ``ParallelRunner`` worker, its pool's manager)
    shares the lock's open file: after a SIGKILL of the run's process it kept the lock, so
    every later run was refused naming a dead pid, and went on working. The child closes
    its copies (the run's process keeps the lock: a flock belongs to the open file, which
    the run's descriptor still holds) and ends when its parent does."""
    if not _held:
        return
    for handle in _held.values():
        handle.close()
    _held.clear()
    exit_with_parent(os.getppid())


os.register_at_fork(after_in_child=_in_forked_child)


def _unprotected(path: Path, why: object) -> None:
    logger.warning("%s: cannot lock (%s); runs of one project are not kept apart", path, why)


def _describe(text: str) -> str:
    try:
        holder: dict[str, Any] = json.loads(text)
        return (
            f"pid {holder['pid']} on {holder['host']}, pipeline {holder['pipeline']}, "
            f"started {holder['started']}"
        )
    except (ValueError, KeyError, TypeError):
        return "a run that has not written its name yet"
