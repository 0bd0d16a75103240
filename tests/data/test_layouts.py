import numpy as np
import pytest

from hrda_kedro.data import DataError
from hrda_kedro.data.layouts import DatasetSpec, ResizeSpec, find_pairs, unread_entries
from hrda_kedro.params import parse
from tests.data.helpers import cityscapes_tree, gta_tree, synthia_tree, write_index, write_rgb


def test_gta5_pairs_and_orphans(tmp_path):
    root = gta_tree(tmp_path / "gta", ("00001", "00002", "00003"))
    pairs, problems = find_pairs(DatasetSpec("gta5", str(root)), root)
    assert [p.name for p in pairs] == ["00001", "00002", "00003"] and not problems
    assert (
        pairs[0].image == root / "images" / "00001.png"
        and pairs[0].label == root / "labels" / "00001.png"
    )
    (root / "labels" / "00002.png").unlink()
    (root / "images" / "00003.png").unlink()
    pairs, problems = find_pairs(DatasetSpec("gta5", str(root)), root)
    assert [p.name for p in pairs] == ["00001"]
    assert str(problems[0]) == (
        f"{root}/images/00002.png: image without a label; expected {root}/labels/00002.png"
    )
    assert str(problems[1]) == (
        f"{root}/labels/00003.png: label without an image; expected an image {root}/images/00003.png"
    )


def test_a_users_folder_names_the_keys_that_say_where_files_are_looked_for(tmp_path):
    """A suffix mistake said only ``a0_gt.png.png`` or ``a0_gtFine.png|.jpg|.jpeg``."""
    root = tmp_path / "own"
    write_rgb(root / "images" / "a0_leftImg.jpg")
    write_index(root / "labels" / "a0_gt.png", np.zeros((6, 10)))
    spec = DatasetSpec("folder", str(root), label_suffix="_gt.png", class_map={0: "road"})
    _, problems = find_pairs(spec, root)
    assert sorted(str(problem).partition(": ")[2] for problem in problems) == [
        f"image without a label; expected {root}/labels/a0_leftImg_gt.png.png "
        "(label_dir, label_suffix)",
        f"label without an image; expected an image {root}/images/a0_gt.png (or .jpg, .jpeg) "
        "(image_dir, image_suffix)",
    ]
    with pytest.raises(ValueError, match=r"class_map: required .* \(or labels: false for images"):
        parse(DatasetSpec, {"kind": "folder", "root": str(root)}, "target_train")


def test_images_and_masks_side_by_side_in_one_folder_pair_by_the_label_suffix(tmp_path):
    """``a0.jpg`` beside ``a0_mask.png`` (PNG images too): the masks were read as images
    ("image without a label") or the images as labels."""
    root = tmp_path / "own"
    for name in ("a0.jpg", "b0.png"):
        write_rgb(root / name)
    for name in ("a0_mask.png", "b0_MASK.png"):
        write_index(root / name, np.zeros((6, 10)))
    spec = parse(
        DatasetSpec,
        {"kind": "folder", "root": str(root), "image_dir": ".", "label_dir": "./",
         "label_suffix": "_mask", "class_map": {0: "road"}},
        "source_train",
    )  # fmt: skip
    pairs, problems = find_pairs(spec, root)
    assert not problems
    assert [(p.name, p.image.name, p.label.name) for p in pairs] == [
        ("a0", "a0.jpg", "a0_mask.png"),
        ("b0", "b0.png", "b0_MASK.png"),
    ]
    assert unread_entries(spec, root) == []  # the masks are not "files of another type"
    with pytest.raises(ValueError, match=r"label_suffix: images and labels share the folder"):
        parse(
            DatasetSpec,
            {"kind": "folder", "root": str(root), "image_dir": ".", "label_dir": ".",
             "class_map": {0: "road"}},
            "source_train",
        )  # fmt: skip


def test_missing_folders(tmp_path):
    with pytest.raises(DataError, match=r"gta/images: folder not found; expected the gta5 images"):
        find_pairs(DatasetSpec("gta5", str(tmp_path / "gta")), tmp_path / "gta")
    write_rgb(tmp_path / "syn" / "RGB" / "0.png")
    with pytest.raises(
        DataError, match=r"syn/GT/LABELS: folder not found; expected the synthia labels"
    ):
        find_pairs(DatasetSpec("synthia", "x"), tmp_path / "syn")


def test_synthia_and_cityscapes_layouts(tmp_path):
    root = synthia_tree(tmp_path / "syn")
    pairs, _ = find_pairs(DatasetSpec("synthia", "x"), root)
    assert [p.label for p in pairs] == [
        root / "GT" / "LABELS" / "0000000.png",
        root / "GT" / "LABELS" / "0000001.png",
    ]
    root = cityscapes_tree(tmp_path / "cs", "val", np.zeros((6, 10)))
    pairs, problems = find_pairs(DatasetSpec("cityscapes", "x", subset="val"), root)
    assert not problems  # *_gtFine_color.png and friends are not labels
    assert [p.name for p in pairs] == [
        "val/aachen/aachen_000000_000010",
        "val/bonn/bonn_000000_000011",
    ]
    assert pairs[1].label.name == "bonn_000000_000011_gtFine_labelIds.png"


def test_folder_layout_with_suffixes_limit_and_no_labels(tmp_path):
    for i in range(3):
        write_rgb(tmp_path / "own" / "rgb" / f"f{i}_img.jpg")
        write_index(tmp_path / "own" / "ann" / f"f{i}_mask.png", np.zeros((6, 10)))
    spec = DatasetSpec("folder", "x", image_dir="rgb", label_dir="ann", image_suffix="_img", label_suffix="_mask",
                       class_map={0: "road"}, limit=2)  # fmt: skip
    pairs, problems = find_pairs(spec, tmp_path / "own")
    assert [p.name for p in pairs] == ["f0", "f1"] and not problems
    spec = DatasetSpec("folder", "x", image_dir="rgb", labels=False)
    assert [p.label for p in find_pairs(spec, tmp_path / "own")[0]] == [None] * 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "gta"}, r"parameter d.kind: expected one of 'embedded' \| 'gta5'"),
        ({"kind": "gta5"}, "parameter d.root: required for kind 'gta5'"),
        ({"kind": "embedded", "root": "x"}, "parameter d.root: not used by kind 'embedded'"),
        (
            {"kind": "cityscapes", "root": "x", "subset": "training"},
            "parameter d.subset: expected train | val",
        ),
        (
            {"kind": "gta5", "root": "x", "limit": 0},
            "parameter d.limit: expected null or a positive integer",
        ),
        (
            {"kind": "gta5", "root": "x", "class_map": {1: 2}},
            "parameter d.class_map: only used with kind 'folder'",
        ),
        ({"kind": "folder", "root": "x"}, "parameter d.class_map: required for kind 'folder'"),
        (
            {"kind": "folder", "root": "x", "class_map": {1: "cars"}},
            "parameter d.class_map: class map value 'cars'",
        ),
        (
            {"kind": "gta5", "root": "x", "resize": {"width": 0, "height": 5}},
            "parameter d.resize.width: expected a positive",
        ),
        ({"kind": "gta5", "root": "x", "lables": False}, "parameter d.lables: unknown key"),
    ],
)
def test_bad_dataset_parameters_name_the_key(params, message):
    with pytest.raises(ValueError, match=message):
        parse(DatasetSpec, params, "d")


def test_class_map_from_yaml_string_keys():
    spec = parse(
        DatasetSpec, {"kind": "folder", "root": "x", "class_map": {"0": "road", "7": 255}}, "d"
    )
    assert list(spec.mapping().lut[[0, 7]]) == [0, 255]


def test_hrda_resize_sizes():
    assert ResizeSpec(2560, 1440).load_size(1052, 1914) == (1407, 2560)  # GTA5
    assert ResizeSpec(2560, 1520).load_size(760, 1280) == (1520, 2560)  # SYNTHIA
    assert ResizeSpec(2048, 1024).load_size(1024, 2048) == (1024, 2048)  # Cityscapes
    assert ResizeSpec(300, 200, keep_ratio=False).load_size(1052, 1914) == (200, 300)
    # mmcv's rule bounds the long and the short edge, whatever the orientation: a portrait
    # image (Mapillary has some) is not fitted inside a landscape box.
    assert ResizeSpec(2048, 1024).load_size(2000, 1000) == (2048, 1024)
    assert ResizeSpec(2048, 1024).load_size(4000, 3000) == (1365, 1024)
