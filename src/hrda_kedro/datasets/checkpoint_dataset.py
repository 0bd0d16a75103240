"""A versioned Kedro dataset for HRDA training checkpoints."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    Version,
    VersionNotFoundError,
    get_filepath_str,
    get_protocol_and_path,
)

from hrda_kedro.data import MissingInputError
from hrda_kedro.hrda.checkpoint import FORMAT, atomic_write_bytes, from_bytes, to_bytes


class CheckpointDataset(AbstractVersionedDataset[dict, dict]):
    """Save and load a checkpoint dictionary (model, teacher, config, history...).

    ``kedro_datasets_experimental.pytorch.PyTorchDataset`` stores a module's state_dict
    only; a checkpoint also carries the teacher, the model configuration and the metric
    history. Local writes are atomic (temporary file + rename); loads use
    ``weights_only=True``.
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(fs_args or {}))
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def load(self) -> dict:
        path = get_filepath_str(self.check_loadable(), self._protocol)
        with self._fs.open(path, "rb") as handle:
            return from_bytes(handle.read(), path)

    def check_loadable(self) -> PurePosixPath:
        """The checkpoint to load; a model not trained yet, or a pinned version that does not
        exist, is a :class:`MissingInputError` naming the folder (Kedro's own error prints the
        dataset's repr under a long traceback)."""
        folder = get_filepath_str(self._filepath, self._protocol)
        try:
            path = self._get_load_path()
        except VersionNotFoundError as err:
            raise MissingInputError(
                f"{folder}: no checkpoint saved here yet (expected "
                f"{folder}/<timestamp>/{self._filepath.name})"
            ) from err
        if self._version and self._version.load and not self._exists():
            saved = sorted(PurePosixPath(p).parent.name for p in self._get_versions())
            raise MissingInputError(
                f"{folder}: no saved version {self._version.load!r} (--load-versions); "
                f"saved: {', '.join(saved) if saved else 'none'}"
            )
        return path

    def save(self, data: dict) -> None:
        path = get_filepath_str(self._get_save_path(), self._protocol)
        payload = to_bytes({"format": FORMAT, **data})
        if self._protocol == "file":
            atomic_write_bytes(path, payload)
        else:  # object stores write whole objects atomically already
            with self._fs.open(path, "wb") as handle:
                handle.write(payload)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except Exception:  # noqa: BLE001 - no version saved yet
            return False
        return self._fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
