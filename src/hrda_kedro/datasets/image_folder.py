"""A read-only Kedro dataset for a folder of own images (the ``predict`` pipeline's input)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from hrda_kedro.data.layouts import broken_link_error, is_broken_link, list_files
from hrda_kedro.data.validation import IMAGE, read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_listed_image(path: Path) -> np.ndarray:
    """:func:`read_image`, naming a broken link as one (not "file not found")."""
    if is_broken_link(path):
        raise broken_link_error(path, IMAGE)
    return read_image(path)


def expand_home(path: str) -> Path:
    """``path`` with ``~`` as the user's home folder.

    ``--params "predict.input_dir=~/photos"`` reaches the dataset as ``<project>/~/photos``:
    no shell expands ``~`` inside an argument, and Kedro makes the relative path absolute.
    """
    parts = Path(path).expanduser().parts
    if "~" not in parts:
        return Path(*parts)
    return Path.home().joinpath(*parts[parts.index("~") + 1 :])


class ImageFolder(Mapping[str, Callable[[], np.ndarray]]):
    """The images below ``root``, listed but not read, as a ``PartitionedDataset`` loads:
    name (the path relative to ``root``, suffix included) -> a function that decodes it.

    Each call decodes the file again (checked RGB ``(H, W, 3)`` uint8, any mode), so a folder
    of large photos never sits in memory; a bad file raises :class:`DataError` naming it.
    """

    def __init__(self, root: Path, files: Sequence[Path], hidden: Sequence[Path] = ()) -> None:
        self.root = root
        self.files = tuple(files)  # every file below root, sorted; images and others
        self.hidden = tuple(hidden)  # hidden files and folders left out, for the node's log
        self._images = {
            p.relative_to(root).as_posix(): p
            for p in self.files
            if p.suffix.lower() in IMAGE_SUFFIXES
        }

    def path(self, name: str) -> Path:
        return self._images[name]

    def __getitem__(self, name: str) -> Callable[[], np.ndarray]:
        return partial(read_listed_image, self._images[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._images)

    def __len__(self) -> int:
        return len(self._images)


class ImageFolderDataset(AbstractDataset[Any, ImageFolder]):
    """``.png``/``.jpg``/``.jpeg`` files (any case) below ``path``, subfolders included
    (linked ones too; hidden files and folders are left out), ``~`` read as the home folder.

    Not kedro-datasets' ``PartitionedDataset``: it takes one file suffix, raises its own
    ``No partitions found`` before a node could say what the folder holds, and wraps each
    partition's errors in a ``DatasetError``; here the node reading the folder names the
    folder or the bad file in one line (``pipelines/predict/nodes.py::list_inputs``).
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._root = expand_home(path)
        self.metadata = metadata

    @property
    def path(self) -> Path:
        """The folder read (Kedro makes a relative catalog path absolute in a session)."""
        return self._root

    def load(self) -> ImageFolder:
        """The listing only (empty when the folder is missing: the node says so)."""
        return ImageFolder(self._root, *list_files(self._root))

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._root}: a folder of input images is never written")

    def _exists(self) -> bool:
        return self._root.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._root)}
