"""Staging folders of killed runs are removed by the next run; those of live runs are not.

Two ingestions may run at once (concurrent runs must not corrupt each other): a folder
whose run is alive is in use, whatever its age.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hrda_kedro.data.ingest import _Staging


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_next_run_removes_only_abandoned_staging_folders(tmp_path: Path) -> None:
    final = tmp_path / "embedded"
    live = tmp_path / f".embedded.staging-{os.getpid()}-aaaa1111"
    dead = tmp_path / f".embedded.staging-{_dead_pid()}-bbbb2222"
    old = tmp_path / f".embedded.old-{_dead_pid()}-cccc3333"
    other = tmp_path / f".embedded-data.staging-{_dead_pid()}-dddd4444"  # another folder's
    for folder in (live, dead, old, other):
        (folder / "images").mkdir(parents=True)
    staging = _Staging()
    staged = staging.folder(final, replace_whole=True)
    assert live.is_dir() and other.is_dir()
    assert not dead.exists() and not old.exists()
    assert staged.name.startswith(f".embedded.staging-{os.getpid()}-")
    staging.rollback()
    assert not staged.exists()
