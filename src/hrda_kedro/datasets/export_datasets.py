"""Kedro datasets of the deployable exports (see :mod:`hrda_kedro.export`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from hrda_kedro.hrda.checkpoint import CheckpointError, atomic_write_bytes

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# The exported weights' digest, in config.json and in the ONNX graph's metadata: the files
# of one export folder are written one by one, and must be of one model.
DIGEST_KEY = "weights_sha256"


class ExportedModelDataset(AbstractDataset[dict, dict]):
    """A folder with ``model.safetensors`` and ``config.json``; saves and loads
    ``{"weights": {name: tensor}, "config": {...}}``.

    kedro-datasets' experimental ``SafetensorsDataset`` hands its writer the file's name,
    which bypasses the project's atomic writes (the rename would then replace the weights
    with an empty file); here both files are written whole-or-nothing.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._folder = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict:
        weights_path, config_path = self._folder / WEIGHTS_FILE, self._folder / CONFIG_FILE
        for path in (weights_path, config_path):
            if not path.is_file():
                raise CheckpointError(f"{path}: not found; expected an exported model folder")
        try:
            weights = load_safetensors(weights_path.read_bytes())
        except SafetensorError as exc:
            raise CheckpointError(
                f"{weights_path}: not a readable safetensors file ({exc})"
            ) from None
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from None
        return {"weights": weights, "config": config}

    def save(self, data: dict) -> None:
        """The weights, then ``config.json`` with their digest (a crash between the two
        leaves a pair that loading refuses). The folder holds one model: once the new pair
        is written, the ONNX graphs of the previous one (an ``export`` after retraining),
        whatever their file name, are removed, not left to be deployed; a failed write
        keeps them beside their own pair."""
        digest = data["config"].get(DIGEST_KEY)
        changed = digest is None or self._saved_digest() != digest
        # Every graph in the folder, not only the catalog's window_predictor.onnx: a catalog
        # may name exported_onnx otherwise, and a graph here was made from the pair replaced.
        stale = sorted(self._folder.glob("*.onnx")) if changed else []
        atomic_write_bytes(self._folder / WEIGHTS_FILE, save_safetensors(data["weights"]))
        config = json.dumps(data["config"], indent=2, sort_keys=True).encode()
        atomic_write_bytes(self._folder / CONFIG_FILE, config)
        for graph in stale:
            graph.unlink()
            logger.info(
                "removed %s: it was exported from another model (kedro run "
                "--pipeline=export_onnx makes it again)",
                graph,
            )

    def _saved_digest(self) -> str | None:
        try:
            return json.loads((self._folder / CONFIG_FILE).read_text(encoding="utf-8")).get(
                DIGEST_KEY
            )
        except (OSError, ValueError, AttributeError):
            return None

    def _exists(self) -> bool:
        return (self._folder / WEIGHTS_FILE).is_file() and (self._folder / CONFIG_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._folder)}


class BinaryFileDataset(AbstractDataset[bytes, bytes]):
    """One file's bytes (the ONNX graph), written atomically."""

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(filepath)
        self.metadata = metadata

    def load(self) -> bytes:
        return self._path.read_bytes()

    def save(self, data: bytes) -> None:
        atomic_write_bytes(self._path, data)

    def _exists(self) -> bool:
        return self._path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path)}
