"""Child processes that end with the process that started them."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> threading.Thread:
    """End this process as soon as ``parent_pid`` is no longer its parent.

    torch's spawn asks the kernel for SIGINT on the parent's death, but a worker waiting in
    a collective (gloo, NCCL) never gets to handle it and would hold its memory, GPU memory
    included, forever; a ``ParallelRunner`` worker whose run was killed (SIGKILL) went on
    training and saved its model into the dead run's data. A watcher thread polls instead
    and exits hard: every file on disk is whole (written atomically), nothing else is lost.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    watcher = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    watcher.start()
    return watcher
