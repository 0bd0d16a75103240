"""``kedro`` with one injected fault: ``python fault_driver.py run ...`` (see helpers.kedro).

``HRDA_FAULT`` picks the fault. The ``stop`` kinds make the run write the file named by
``HRDA_FAULT_MARKER`` at the fault point and then wait there forever, so that the test
kills it with SIGKILL at a known point instead of after a guessed delay:

- ``stop-in-step:N``: inside the N-th training step, after the loss, before the optimiser
  step;
- ``stop-in-write:NAME``: inside the first write of a checkpoint file named NAME, with half
  of its bytes on disk (the temporary file is cut to half its length), before the rename;
- ``stop-at-load:PART``: when a checkpoint whose path holds PART is first read (``round_1``:
  after round 1's model was saved, when the next node wants it).

- ``stop-in-draw``: inside the drawing of the embedded benchmark, after its first image,
  until the file ``<marker>.release`` exists (so that a SIGTERM's clean-up can finish).

``file-size:BYTES`` caps the size of every file the run writes (``RLIMIT_FSIZE``, SIGXFSZ
ignored): the kernel fails each write past BYTES with EFBIG, mid-file, as a full disk fails
one with ENOSPC. No root, no special file system, and every writer (ours, pandas, Pillow)
meets the same failure.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kedro.framework.cli import main


def _stop_here() -> None:
    Path(os.environ["HRDA_FAULT_MARKER"]).write_text("reached\n")
    threading.Event().wait()  # until SIGKILL


def _stop_in_step(n: int) -> None:
    from hrda_kedro.hrda.training import steps

    real = steps.hrda_loss
    calls = [0]

    def loss(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            _stop_here()
        return result

    steps.hrda_loss = loss


def _stop_in_write(name: str) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}."):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            real(fd)
            _stop_here()
        real(fd)

    os.fsync = fsync


def _stop_at_load(part: str) -> None:
    from hrda_kedro.hrda import checkpoint

    real = checkpoint.from_bytes

    def from_bytes(data: bytes, source: str) -> dict[str, Any]:
        if part in source:
            _stop_here()
        return real(data, source)

    checkpoint.from_bytes = from_bytes
    from hrda_kedro.datasets import checkpoint_dataset

    checkpoint_dataset.from_bytes = from_bytes


def _stop_in_draw() -> None:
    from hrda_kedro.data import streets

    real = streets._write_one
    calls = [0]

    def write_one(*args: Any) -> None:
        real(*args)
        calls[0] += 1
        if calls[0] == 1:
            marker = Path(os.environ["HRDA_FAULT_MARKER"])
            marker.write_text("reached\n")
            release = marker.with_name(marker.name + ".release")
            while not release.exists():
                time.sleep(0.05)

    streets._write_one = write_one


def _cap_file_size(size: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


FAULTS = {
    "stop-in-step": lambda arg: _stop_in_step(int(arg)),
    "stop-in-write": _stop_in_write,
    "stop-at-load": _stop_at_load,
    "stop-in-draw": lambda arg: _stop_in_draw(),
    "file-size": lambda arg: _cap_file_size(int(arg)),
}

if __name__ == "__main__":
    # Ctrl-C as in a terminal: a process started in the background of a script (or a
    # test worker) inherits SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kind, _, argument = os.environ["HRDA_FAULT"].partition(":")
    FAULTS[kind](argument)
    sys.argv[0] = "kedro"
    main()
