"""How data set folders are walked: linked folders, link loops, hidden and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrda_kedro.data.layouts import DatasetSpec, find_pairs
from tests.data.helpers import cityscapes_tree, gta_tree


def test_a_linked_city_folder_is_read_and_a_link_back_up_does_not_loop(tmp_path: Path) -> None:
    """Cityscapes cities linked in from another disk, and a link to an ancestor folder."""
    elsewhere = cityscapes_tree(tmp_path / "other disk", "val", np.zeros((6, 10)), ("bonn",))
    root = cityscapes_tree(tmp_path / "cs", "val", np.zeros((6, 10)), ("aachen",))
    for kind in ("leftImg8bit", "gtFine"):
        (root / kind / "val" / "bonn").symlink_to(elsewhere / kind / "val" / "bonn")
        (root / kind / "val" / "aachen" / "up").symlink_to(root / kind)  # a cycle
    pairs, problems = find_pairs(DatasetSpec("cityscapes", "x", subset="val"), root)
    assert [p.name for p in pairs] == [
        "val/aachen/aachen_000000_000010",
        "val/bonn/bonn_000000_000010",
    ]
    assert not problems


def test_hidden_files_are_skipped_and_a_broken_link_is_a_problem(tmp_path: Path) -> None:
    """A macOS ``._00001.png`` copied along is not an image without a label."""
    root = gta_tree(tmp_path / "gta")
    (root / "images" / "._00001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "images" / ".ipynb_checkpoints").mkdir()
    (root / "images" / ".ipynb_checkpoints" / "00009.png").write_bytes(b"")
    (root / "labels" / "00002.png").unlink()
    (root / "labels" / "00002.png").symlink_to(tmp_path / "nowhere.png")
    pairs, problems = find_pairs(DatasetSpec("gta5", str(root)), root)
    assert [p.name for p in pairs] == ["00001"]
    assert [str(p) for p in problems] == [
        f"{root}/labels/00002.png: a broken link ({tmp_path}/nowhere.png does not exist); "
        "expected a data file (restore the file or remove the link)",
        f"{root}/images/00002.png: image without a label; expected {root}/labels/00002.png",
    ]
