"""Whole-file-or-nothing writes for every catalog dataset on the local disk.

The kedro-datasets types (CSV, JSON, Matplotlib, Pillow, ...) write straight into their
target file, so a full disk or a crash mid-save leaves a truncated report under its real
name, and for a versioned dataset that truncated file becomes the latest version. They all
open files through ``fsspec.filesystem("file")``; :func:`use_atomic_local_writes`
registers :class:`AtomicLocalFileSystem` under that protocol, whose binary writes go to a
hidden sibling and are renamed over the target only once every byte reached the disk (text
modes reach it as binary: fsspec wraps them). Checkpoints do the same themselves
(:mod:`hrda_kedro.hrda.checkpoint`).

Not covered: an exception raised by a serialiser in text mode (``json.dump`` of an object
it cannot encode) is invisible to the file, which then keeps what was written; I/O errors
are always seen.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem, get_umask


class _AtomicFile(LocalFileOpener):
    """A binary write to ``.<name>.<random>.tmp`` next to ``path``, renamed over it on close."""

    def __init__(self, path: str, mode: str, fs: LocalFileSystem) -> None:
        self._failed = False
        super().__init__(path, mode, autocommit=False, fs=fs)

    def _open(self) -> None:
        if self.f is None or self.f.closed:
            target = Path(self.path)
            fd, self.temp = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
            )
            os.fchmod(fd, 0o666 & ~get_umask())  # as a plain open() would: mkstemp gives 0600
            self.f = os.fdopen(fd, self.mode)

    @property
    def name(self) -> str:
        """The target's name: writers such as Pillow pick the format from its suffix."""
        return self.path

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except BaseException:
            self._failed = True
            raise

    def flush(self) -> None:
        try:
            self.f.flush()
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        if self.f.closed:
            return
        try:
            if not self._failed:
                self.f.flush()
                os.fsync(self.f.fileno())
            self.f.close()
            if not self._failed:
                os.replace(self.temp, self.path)
        except BaseException:
            self._failed = True
            raise
        finally:
            if self._failed:
                if not self.f.closed:
                    with suppress(OSError):  # the error that brought us here is the one to report
                        self.f.close()
                Path(self.temp).unlink(missing_ok=True)

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is not None:
            self._failed = True
        self.close()


class AtomicLocalFileSystem(LocalFileSystem):
    """The local file system, with plain binary writes made atomic (see the module doc)."""

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        if mode != "wb" or not kwargs.get("autocommit", True):  # appends, fsspec transactions
            return super()._open(path, mode, block_size=block_size, **kwargs)
        path = self._strip_protocol(path)
        if self.auto_mkdir:
            self.makedirs(self._parent(path), exist_ok=True)
        return _AtomicFile(path, mode, fs=self)


def use_atomic_local_writes() -> None:
    """Make ``fsspec.filesystem("file")`` (and ``"local"``) the atomic local file system.

    Called by the project hooks when a run's context is created, before any catalog dataset
    exists, and before each node (``ParallelRunner``'s spawned workers create no context).
    Registering again is harmless.
    """
    for protocol in ("file", "local"):
        fsspec.register_implementation(protocol, AtomicLocalFileSystem, clobber=True)
