"""The predict pipeline's input dataset: a folder of images, listed now, decoded on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError
from PIL import Image

from hrda_kedro.data import DataError
from hrda_kedro.datasets.image_folder import ImageFolderDataset
from tests.data.helpers import write_rgb


def test_lists_images_of_any_suffix_case_in_subfolders_and_decodes_on_demand(
    tmp_path: Path,
) -> None:
    write_rgb(tmp_path / "b.png", 8, 10)
    write_rgb(tmp_path / "sub" / "a.jpg", 6, 4, seed=1)
    Image.fromarray(np.full((5, 7), 90, np.uint8)).save(tmp_path / "gray.PNG")
    (tmp_path / "UPPER.JPEG").write_bytes(b"not decoded until asked")
    (tmp_path / "notes.txt").write_text("not an image")
    images = ImageFolderDataset(path=str(tmp_path)).load()
    assert images.root == tmp_path
    assert list(images) == ["UPPER.JPEG", "b.png", "gray.PNG", "sub/a.jpg"]
    assert len(images.files) == 5  # the other files are listed too, for the node's messages
    assert images.path("sub/a.jpg") == tmp_path / "sub" / "a.jpg"
    assert images["sub/a.jpg"]().shape == (6, 4, 3)
    assert images["gray.PNG"]().shape == (5, 7, 3)
    with pytest.raises(DataError, match="UPPER.JPEG: not a readable image"):
        images["UPPER.JPEG"]()


def test_a_missing_folder_loads_empty_and_is_never_written(tmp_path: Path) -> None:
    missing = ImageFolderDataset(path=str(tmp_path / "nowhere"))
    assert not missing.exists()
    assert not missing.load() and missing.load().files == ()
    with pytest.raises(DatasetError, match="a folder of input images is never written"):
        missing.save(["an image"])
