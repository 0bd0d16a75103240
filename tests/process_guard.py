"""No test may leave a process behind (a killed run's data-parallel workers, above all).

The test session makes itself a *child subreaper* (Linux): a process whose parent dies is
re-parented to the pytest process instead of init, so every leftover of any test, however
deep, ends up as a direct child here and is found at the end of the session.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from multiprocessing import resource_tracker
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux only); False where the kernel offers no such call."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def children(pid: int | None = None) -> dict[int, str]:
    """Live (non-zombie) direct children of ``pid``: ``{pid: command line}``."""
    parent = os.getpid() if pid is None else pid
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue  # it exited meanwhile
        if int(fields[1]) == parent and fields[0] != "Z":
            found[int(stat.parent.name)] = cmdline.strip()
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, an adopted orphan not reaped yet, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def reap() -> None:
    """Collect the exit status of adopted orphans that ended (else they stay zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def leftovers(grace_seconds: float) -> dict[int, str]:
    """Children still alive after ``grace_seconds`` (workers poll for their parent).

    This process's own multiprocessing resource tracker is not one: it lives as long as
    the process that started it and ends with it.
    """
    own_tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    deadline = time.monotonic() + grace_seconds
    while True:
        reap()
        alive = {pid: cmd for pid, cmd in children().items() if pid != own_tracker}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)
