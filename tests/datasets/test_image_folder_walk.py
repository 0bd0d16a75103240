"""The predict input folder as users fill it: linked folders, macOS litter, broken links, ``~``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrda_kedro.data import DataError
from hrda_kedro.datasets.image_folder import ImageFolderDataset
from tests.data.helpers import write_rgb


def test_a_linked_folder_is_listed_and_a_link_to_an_ancestor_does_not_loop(
    tmp_path: Path,
) -> None:
    write_rgb(tmp_path / "photos" / "a.png")
    root = tmp_path / "inputs"
    root.mkdir()
    (root / "linked_folder").symlink_to(tmp_path / "photos")
    (tmp_path / "photos" / "again").symlink_to(root)  # inputs/linked_folder/again -> inputs
    images = ImageFolderDataset(path=str(root)).load()
    assert list(images) == ["linked_folder/a.png"]
    assert images["linked_folder/a.png"]().shape == (6, 10, 3)


def test_hidden_files_and_folders_are_left_out_and_listed_as_such(tmp_path: Path) -> None:
    write_rgb(tmp_path / "IMG_1.png")
    (tmp_path / "._IMG_1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    write_rgb(tmp_path / ".ipynb_checkpoints" / "IMG_1-checkpoint.png")
    images = ImageFolderDataset(path=str(tmp_path)).load()
    assert list(images) == ["IMG_1.png"] and images.files == (tmp_path / "IMG_1.png",)
    assert [p.name for p in images.hidden] == [".DS_Store", "._IMG_1.png", ".ipynb_checkpoints"]


def test_a_broken_link_is_listed_and_reading_it_names_it(tmp_path: Path) -> None:
    (tmp_path / "broken.png").symlink_to("/nowhere/photo.png")
    images = ImageFolderDataset(path=str(tmp_path)).load()
    assert list(images) == ["broken.png"]
    with pytest.raises(DataError, match=r"broken.png: a broken link \(/nowhere/photo.png does"):
        images["broken.png"]()


def test_a_folder_under_home_is_read_from_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``predict.input_dir=~/photos`` reaches the dataset as ``<project>/~/photos``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_rgb(tmp_path / "photos" / "a.png")
    for path in ("~/photos", "/my/project/~/photos"):
        dataset = ImageFolderDataset(path=path)
        assert dataset.path == tmp_path / "photos" and list(dataset.load()) == ["a.png"]
