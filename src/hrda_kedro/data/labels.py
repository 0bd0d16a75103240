"""Cityscapes' 19 training classes and the label mappings of GTA5, SYNTHIA and Cityscapes.

Everything is derived from the official table in ``cityscapesscripts.helpers.labels`` so
that names, colours and ids cannot drift from what the evaluation script uses. Mappings
are 256- or 65536-entry look-up tables (raw id -> trainId, 255 = ignore): converting a
label is then one fancy-indexing operation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CS_LABELS

from hrda_kedro.hrda import IGNORE_INDEX

_TRAIN_LABELS = sorted(
    (lab for lab in _CS_LABELS if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId
)

NUM_CLASSES = len(_TRAIN_LABELS)
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN_LABELS)
CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = tuple(lab.color for lab in _TRAIN_LABELS)
TRAIN_ID = {name: train_id for train_id, name in enumerate(CITYSCAPES_CLASSES)}

# The classes HRDA's gains come from: thin or small objects that low resolution loses.
SMALL_OBJECT_CLASSES: tuple[int, ...] = tuple(
    TRAIN_ID[n] for n in ("pole", "traffic light", "traffic sign", "person", "rider")
)
# SYNTHIA has no terrain, truck or train; its 13-class protocol also drops wall, fence, pole.
SYNTHIA_16_CLASSES: tuple[int, ...] = tuple(
    i for i, n in enumerate(CITYSCAPES_CLASSES) if n not in ("terrain", "truck", "train")
)
SYNTHIA_13_CLASSES: tuple[int, ...] = tuple(
    i for i in SYNTHIA_16_CLASSES if CITYSCAPES_CLASSES[i] not in ("wall", "fence", "pole")
)


def _lut(pairs: dict[int, int], size: int = 256) -> np.ndarray:
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for raw, train_id in pairs.items():
        lut[raw] = train_id
    return lut


@dataclass(frozen=True)
class LabelMapping:
    """How one data set's label files turn into trainIds.

    ``known_ids`` are the raw values a valid file may hold (others are an error: they
    mean the wrong folder or a corrupt file); ``lut`` maps every raw value to a trainId.
    """

    name: str
    lut: np.ndarray
    known_ids: frozenset[int]
    description: str

    @property
    def is_identity(self) -> bool:
        """True for files that already hold trainIds, which then need no converted copy."""
        return all(int(self.lut[i]) == i for i in self.known_ids)

    def convert(self, raw: np.ndarray) -> np.ndarray:
        """Raw ids ``(H, W)`` -> uint8 trainIds; values must lie inside the table."""
        return self.lut[raw]

    def unknown_values(self, raw: np.ndarray) -> list[int]:
        """Sorted raw values that are not in ``known_ids`` (empty when the file is valid)."""
        present = np.unique(raw)
        return [int(v) for v in present if int(v) not in self.known_ids]

    @property
    def fingerprint(self) -> str:
        """Changes whenever the mapping does, so cached conversions are redone."""
        digest = hashlib.sha1(self.lut.tobytes())
        digest.update(repr(sorted(self.known_ids)).encode())
        return f"{self.name}-{digest.hexdigest()[:12]}"


CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    lab.id: (lab.trainId if 0 <= lab.trainId < 255 else IGNORE_INDEX)
    for lab in _CS_LABELS
    if lab.id >= 0
}
CITYSCAPES_MAPPING = LabelMapping(
    "cityscapes",
    _lut(CITYSCAPES_ID_TO_TRAIN_ID),
    frozenset(CITYSCAPES_ID_TO_TRAIN_ID),
    "Cityscapes label ids 0-33 (*_gtFine_labelIds.png)",
)

# GTA5 labels use Cityscapes ids; the reference lists the 19 that carry a class.
GTA5_ID_TO_TRAIN_ID: dict[int, int] = dict(
    zip(
        (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33),
        range(19),
        strict=True,
    )
)
GTA5_MAPPING = LabelMapping(
    "gta5",
    _lut(GTA5_ID_TO_TRAIN_ID),
    frozenset(CITYSCAPES_ID_TO_TRAIN_ID),
    "Cityscapes label ids 0-33 (GTA5 labels/*.png)",
)

# SYNTHIA-RAND-CITYSCAPES README classes 0-22, as the official conversion maps them: the
# scenes hold no terrain (16), truck (18) or train (20), which map to their classes all the
# same (the 16- and 13-class protocols leave those classes out of the mean).
SYNTHIA_ID_TO_TRAIN_ID: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10,
    10: 11, 17: 12, 8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18,
}  # fmt: skip
SYNTHIA_MAPPING = LabelMapping(
    "synthia",
    _lut(SYNTHIA_ID_TO_TRAIN_ID, size=65536),
    frozenset(range(23)),
    "SYNTHIA class ids 0-22 in the first channel of a 16-bit PNG (GT/LABELS/*.png)",
)

TRAIN_ID_MAPPING = LabelMapping(
    "trainid",
    _lut({i: i for i in range(NUM_CLASSES)}),
    frozenset([*range(NUM_CLASSES), IGNORE_INDEX]),
    f"Cityscapes trainIds 0-{NUM_CLASSES - 1} or {IGNORE_INDEX} (ignore)",
)


def mapping_from_class_map(class_map: dict[int, int | str], name: str = "folder") -> LabelMapping:
    """A mapping for a user's own labels: raw id -> trainId or Cityscapes class name.

    ``"ignore"`` or 255 marks a raw id as known but ignored.
    """
    pairs: dict[int, int] = {}
    for raw, target in class_map.items():
        if not isinstance(raw, int) or not 0 <= raw < 65536:
            raise ValueError(f"class map key {raw!r}: expected a label value 0-65535")
        if isinstance(target, str):
            if target != "ignore" and target not in TRAIN_ID:
                raise ValueError(
                    f"class map value {target!r} for {raw}: expected a Cityscapes class name "
                    f"({', '.join(CITYSCAPES_CLASSES)}) or 'ignore'"
                )
            pairs[raw] = TRAIN_ID.get(target, IGNORE_INDEX)
        elif isinstance(target, int) and (0 <= target < NUM_CLASSES or target == IGNORE_INDEX):
            pairs[raw] = target
        else:
            raise ValueError(
                f"class map value {target!r} for {raw}: expected a trainId 0-{NUM_CLASSES - 1}, "
                f"{IGNORE_INDEX} or a class name"
            )
    size = 256 if max(pairs, default=0) < 256 else 65536
    return LabelMapping(
        name, _lut(pairs, size), frozenset(pairs), f"the class map's ids {sorted(pairs)}"
    )


def palette() -> np.ndarray:
    """``(256, 3)`` uint8 colours indexed by trainId; ignore and unused entries are black."""
    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[:NUM_CLASSES] = CITYSCAPES_COLORS
    return colors


def colorize(label: np.ndarray) -> np.ndarray:
    """TrainId map ``(H, W)`` -> RGB ``(H, W, 3)`` in the Cityscapes palette."""
    return palette()[np.asarray(label, dtype=np.uint8)]


# Mapillary Vistas v1.2: 66 classes, ids 0-65 in 8-bit label PNGs (id 65 = unlabeled). The
# 25 ids below carry a Cityscapes class, as in the official HRDA conversion
# (tools/convert_datasets/mapillary.py); every other id is ignored. The table with the
# Mapillary names is in docs/benchmarks.md.
MAPILLARY_CLASSES: dict[int, str] = {
    13: "construction--flat--road", 24: "marking--general", 41: "object--manhole",
    2: "construction--barrier--curb", 15: "construction--flat--sidewalk",
    17: "construction--structure--building", 6: "construction--barrier--wall",
    3: "construction--barrier--fence", 45: "object--support--pole",
    47: "object--support--utility-pole", 48: "object--traffic-light",
    50: "object--traffic-sign--front", 30: "nature--vegetation", 29: "nature--terrain",
    27: "nature--sky", 19: "human--person", 20: "human--rider--bicyclist",
    21: "human--rider--motorcyclist", 22: "human--rider--other-rider",
    55: "object--vehicle--car", 61: "object--vehicle--truck", 54: "object--vehicle--bus",
    58: "object--vehicle--on-rails", 57: "object--vehicle--motorcycle",
    52: "object--vehicle--bicycle",
}  # fmt: skip
MAPILLARY_ID_TO_TRAIN_ID: dict[int, int] = {
    13: 0, 24: 0, 41: 0, 2: 1, 15: 1, 17: 2, 6: 3, 3: 4, 45: 5, 47: 5, 48: 6, 50: 7,
    30: 8, 29: 9, 27: 10, 19: 11, 20: 12, 21: 12, 22: 12, 55: 13, 61: 14, 54: 15,
    58: 16, 57: 17, 52: 18,
}  # fmt: skip
MAPILLARY_MAPPING = LabelMapping(
    "mapillary",
    _lut(MAPILLARY_ID_TO_TRAIN_ID),
    frozenset(range(66)),
    "Mapillary Vistas v1.2 class ids 0-65 (<subset>/labels/*.png)",
)
