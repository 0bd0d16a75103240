"""A read-only Kedro dataset for a folder of own images (the ``predict`` pipeline's input)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from hrda_kedro.data.validation import read_image_as_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolder(Mapping[str, Callable[[], np.ndarray]]):
    """The images below ``root``, listed but not read, as a ``PartitionedDataset`` loads:
    name (the path relative to ``root``, suffix included) -> a function that decodes it.

    Each call decodes the file again (checked RGB ``(H, W, 3)`` uint8, any mode), so a folder
    of large photos never sits in memory; a bad file raises :class:`DataError` naming it.
    """

    def __init__(self, root: Path, files: Sequence[Path]) -> None:
        self.root = root
        self.files = tuple(files)  # every file below root, sorted; images and others
        self._images = {
            p.relative_to(root).as_posix(): p
            for p in self.files
            if p.suffix.lower() in IMAGE_SUFFIXES
        }

    def path(self, name: str) -> Path:
        return self._images[name]

    def __getitem__(self, name: str) -> Callable[[], np.ndarray]:
        return partial(read_image_as_rgb, self._images[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._images)

    def __len__(self) -> int:
        return len(self._images)


class ImageFolderDataset(AbstractDataset[Any, ImageFolder]):
    """``.png``/``.jpg``/``.jpeg`` files (any case) below ``path``, subfolders included.

    Not kedro-datasets' ``PartitionedDataset``: it takes one file suffix, raises its own
    ``No partitions found`` before a node could say what the folder holds, and wraps each
    partition's errors in a ``DatasetError``; here the node reading the folder names the
    folder or the bad file in one line (``pipelines/predict/nodes.py::list_inputs``).
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._root = Path(path)
        self.metadata = metadata

    @property
    def path(self) -> Path:
        """The folder read (Kedro makes a relative catalog path absolute in a session)."""
        return self._root

    def load(self) -> ImageFolder:
        """The listing only (empty when the folder is missing: the node says so)."""
        files = sorted(p for p in self._root.rglob("*") if p.is_file())
        return ImageFolder(self._root, files)

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._root}: a folder of input images is never written")

    def _exists(self) -> bool:
        return self._root.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._root)}
