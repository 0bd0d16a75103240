"""Bad inputs shared by the reliability tests: how each is made in a trained project.

A maker takes the project folder, writes what the input needs (data under a path with
spaces and non-ASCII, or a parameters file) and returns the runtime parameters that point
the run at it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from kedro.io.core import DatasetError

from tests.data.helpers import gta_tree, write_index, write_rgb

Params = dict[str, Any]
USER_DATA = "user data ü"  # spaces and non-ASCII in every data path below


@dataclass(frozen=True)
class BadInput:
    """One input: how to make it in a trained project, and what the run must say."""

    name: str
    kind: str  # parameters | data | user image | checkpoint
    pipeline: str
    make: Callable[[Path], Params]
    error: type[Exception]
    message: str  # regex on the flattened message


def at_run(params: Params) -> Callable[[Path], Params]:
    """Parameters passed at run time (as ``--params``)."""
    return lambda project: params


def in_local(params: Params) -> Callable[[Path], Params]:
    """Parameters written to conf/local/parameters.yml (not passed at run time)."""

    def make(project: Path) -> Params:
        (project / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(params))
        return {}

    return make


def gta(project: Path, damage: Callable[[Path], object]) -> Params:
    """The user's own GTA5-layout source data (2 pairs), one file then damaged."""
    root = gta_tree(project / USER_DATA, names=("00001", "00002"))
    damage(root)
    return {"ingestion_datasets": {"source_train": {"kind": "gta5", "root": str(root)}}}


def gta_image(root: Path) -> Path:
    return root / "images" / "00002.png"


def good_photo(path: Path) -> None:
    write_rgb(path, 6, 10)


def user_folder(project: Path, files: dict[str, Callable[[Path], object]]) -> Params:
    """The user's own images and masks (``kind: folder``), made by ``files``."""
    root = project / USER_DATA
    for name, write in files.items():
        write(root / "photos" / name)
        write_index(root / "masks" / f"{Path(name).stem}.png", np.zeros((6, 10)))
    spec = {
        "kind": "folder",
        "root": str(root),
        "image_dir": "photos",
        "label_dir": "masks",
        "class_map": {0: "road"},
    }
    return {"ingestion_datasets": {"source_train": spec}}


def raised_by_us(error: BaseException) -> bool:
    """Whether the error the user reads was raised in hrda_kedro (under Kedro's wrapper)."""
    while isinstance(error, DatasetError) and error.__cause__ is not None:
        error = error.__cause__
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and "hrda_kedro" in frame.tb_frame.f_code.co_filename
