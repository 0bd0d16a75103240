import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, trainId2label

from hrda_kedro.data.labels import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLORS,
    CITYSCAPES_MAPPING,
    GTA5_MAPPING,
    SMALL_OBJECT_CLASSES,
    SYNTHIA_13_CLASSES,
    SYNTHIA_16_CLASSES,
    SYNTHIA_MAPPING,
    TRAIN_ID_MAPPING,
    colorize,
    mapping_from_class_map,
)


def test_classes_follow_the_official_table():
    assert len(CITYSCAPES_CLASSES) == 19
    for train_id, (name, color) in enumerate(
        zip(CITYSCAPES_CLASSES, CITYSCAPES_COLORS, strict=True)
    ):
        assert trainId2label[train_id].name == name
        assert trainId2label[train_id].color == color
    assert [CITYSCAPES_CLASSES[i] for i in SMALL_OBJECT_CLASSES] == [
        "pole", "traffic light", "traffic sign", "person", "rider",
    ]  # fmt: skip


def test_cityscapes_ids_map_to_official_train_ids():
    for label_id in range(34):
        expected = id2label[label_id].trainId
        expected = 255 if expected in (-1, 255) else expected
        assert CITYSCAPES_MAPPING.lut[label_id] == expected


def test_gta5_mapping_is_the_reference_list():
    assert GTA5_MAPPING.lut[33] == 18
    assert GTA5_MAPPING.lut[7] == 0 and GTA5_MAPPING.lut[26] == 13
    assert GTA5_MAPPING.lut[0] == 255 and GTA5_MAPPING.lut[34] == 255
    np.testing.assert_array_equal(GTA5_MAPPING.lut[:34], CITYSCAPES_MAPPING.lut[:34])


def test_synthia_mapping_and_class_subsets():
    assert (
        SYNTHIA_MAPPING.lut[21] == 3
        and SYNTHIA_MAPPING.lut[3] == 0
        and SYNTHIA_MAPPING.lut[11] == 18
    )
    for no_class in (0, 13, 14, 22):  # void, parking, road-work, lane
        assert SYNTHIA_MAPPING.lut[no_class] == 255
    # Terrain, truck and train, absent from the scenes, map as the official conversion does.
    assert [int(SYNTHIA_MAPPING.lut[i]) for i in (16, 18, 20)] == [9, 14, 16]
    assert len(SYNTHIA_MAPPING.lut) == 65536
    assert {CITYSCAPES_CLASSES[i] for i in range(19)} - {CITYSCAPES_CLASSES[i] for i in SYNTHIA_16_CLASSES} == {
        "terrain", "truck", "train",
    }  # fmt: skip
    assert len(SYNTHIA_13_CLASSES) == 13 and 5 not in SYNTHIA_13_CLASSES


def test_identity_and_unknown_values():
    assert TRAIN_ID_MAPPING.is_identity and not GTA5_MAPPING.is_identity
    assert GTA5_MAPPING.unknown_values(np.array([[7, 40, 41]])) == [40, 41]
    assert TRAIN_ID_MAPPING.unknown_values(np.array([[0, 18, 255, 19]])) == [19]


def test_class_map_by_name_or_train_id():
    mapping = mapping_from_class_map({0: "ignore", 1: "road", 2: 13, 300: "sky"})
    assert list(mapping.lut[[0, 1, 2, 300]]) == [255, 0, 13, 10]
    assert mapping.unknown_values(np.array([1, 3])) == [3]
    with pytest.raises(ValueError, match="'roads' for 1: expected a Cityscapes class name"):
        mapping_from_class_map({1: "roads"})
    with pytest.raises(ValueError, match="value 19 for 1: expected a trainId"):
        mapping_from_class_map({1: 19})


def test_colorize_uses_the_palette():
    rgb = colorize(np.array([[0, 18, 255]]))
    assert rgb.tolist() == [[[128, 64, 128], [119, 11, 32], [0, 0, 0]]]
