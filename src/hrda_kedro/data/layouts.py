"""Where each data set keeps its images and labels, and how files pair up.

Supported layouts (``kind``):

- ``embedded``: ``<root>/<subset>/images/*.png`` + ``labels/*.png`` (trainIds), drawn by
  :mod:`hrda_kedro.data.streets`;
- ``gta5``: ``<root>/images/*.png`` + ``<root>/labels/*.png`` (Cityscapes ids);
- ``synthia``: ``<root>/RGB/*.png`` + ``<root>/GT/LABELS/*.png`` (16-bit, ids in channel 1);
- ``cityscapes``: ``<root>/leftImg8bit/<subset>/<city>/*_leftImg8bit.png`` +
  ``<root>/gtFine/<subset>/<city>/*_gtFine_labelIds.png``;
- ``acdc``: ``<root>/rgb_anon/<condition>/<subset>/<sequence>/*_rgb_anon.png`` +
  ``<root>/gt/<condition>/<subset>/<sequence>/*_gt_labelTrainIds.png`` (trainIds), for each
  selected condition (fog, night, rain, snow);
- ``dark_zurich``: ``<root>/rgb_anon/<subset>/night/<sequence>/*_rgb_anon.png`` +
  ``<root>/gt/<subset>/night/<sequence>/*_gt_labelTrainIds.png`` (trainIds; val only);
- ``bdd100k``: ``<root>/images/10k/<subset>/*.jpg`` + ``<root>/labels/sem_seg/masks/<subset>/*.png``
  (trainIds);
- ``mapillary``: ``<root>/<subset>/images/*.jpg`` + ``<root>/<subset>/labels/*.png`` (Vistas
  v1.2 ids 0-65, mapped to trainIds as the official HRDA conversion does);
- ``folder``: ``<root>/<image_dir>/*.{png,jpg,jpeg}`` + ``<root>/<label_dir>/*.png`` with a
  ``class_map`` from raw label values to trainIds or Cityscapes class names; one folder for
  both (``a0.jpg`` beside ``a0_mask.png``) when ``label_suffix`` tells them apart.

Pairing is by name; an image without a label and a label without an image are both
problems reported with the file they concern.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hrda_kedro.data import DataError
from hrda_kedro.data.labels import (
    CITYSCAPES_MAPPING,
    GTA5_MAPPING,
    MAPILLARY_MAPPING,
    SYNTHIA_MAPPING,
    TRAIN_ID_MAPPING,
    LabelMapping,
    mapping_from_class_map,
)
from hrda_kedro.data.streets import EMBEDDED_SUBSETS
from hrda_kedro.data.validation import LabelFormat, check_folder
from hrda_kedro.hrda.config import Config, ConfigError, require

logger = logging.getLogger(__name__)

Kind = Literal[
    "embedded", "gta5", "synthia", "cityscapes", "acdc", "dark_zurich", "bdd100k", "mapillary",
    "folder",
]  # fmt: skip
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# The subsets (split folders) each data set ships; ``subset`` must name one of them.
SUBSETS: dict[str, tuple[str, ...]] = {
    "cityscapes": ("train", "val", "test"),
    "acdc": ("train", "val", "test"),
    "dark_zurich": ("train", "val", "test"),
    "bdd100k": ("train", "val", "test"),
    "mapillary": ("training", "validation", "testing"),
}
ACDC_CONDITIONS = ("fog", "night", "rain", "snow")


@dataclass(frozen=True)
class ResizeSpec(Config):
    """HRDA's resize on load: to ``width x height``, or inside it keeping the aspect ratio."""

    width: int
    height: int
    keep_ratio: bool = True

    def validate(self) -> None:
        require(
            self.width >= 1 and self.height >= 1,
            "width" if self.width < 1 else "height",
            f"expected a positive width and height, got {self.width}x{self.height}",
        )

    def load_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` an image of ``height x width`` is resized to.

        With ``keep_ratio``, mmcv's ``rescale_size`` (HRDA's pipelines): the larger of
        ``width, height`` bounds the image's long edge and the smaller its short edge,
        whatever the image's orientation (a portrait photo is not shrunk to fit a landscape
        box)."""
        if not self.keep_ratio:
            return self.height, self.width
        long_edge, short_edge = max(self.width, self.height), min(self.width, self.height)
        scale = min(long_edge / max(height, width), short_edge / min(height, width))
        return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass(frozen=True)
class DatasetSpec(Config):
    """One split's data set as configured under ``ingestion_datasets.<split>``."""

    kind: Kind
    root: str | None = None  # not used by ``embedded`` (see ingestion.embedded.root)
    subset: str | None = None  # see SUBSETS; embedded: defaults to the split's name
    labels: bool = True  # false: images only (allowed for target_train)
    resize: ResizeSpec | None = None
    limit: int | None = None  # take the first N pairs (sorted by name)
    image_dir: str = "images"  # folder only
    label_dir: str = "labels"  # folder only
    image_suffix: str = ""  # folder only: stripped from image names before pairing
    label_suffix: str = ""  # folder only: stripped from label names before pairing
    class_map: Any = None  # folder only: {raw value: trainId | class name | "ignore"}
    conditions: list[str] | None = None  # acdc only: fog | night | rain | snow (null: all four)

    def validate(self) -> None:
        kind = self.kind
        require(
            kind == "embedded" or bool(self.root),
            "root",
            f"required for kind {kind!r}, expected a folder path",
        )
        require(
            kind != "embedded" or self.root is None,
            "root",
            "not used by kind 'embedded' (see ingestion.embedded.root), expected null",
        )
        require(
            kind not in SUBSETS or self.subset in SUBSETS[kind],
            "subset",
            f"expected {' | '.join(SUBSETS.get(kind, ()))} for {kind}, got {self.subset!r}",
        )
        require(
            kind != "embedded" or self.subset is None or self.subset in EMBEDDED_SUBSETS,
            "subset",
            f"expected one of the embedded benchmark's subsets {' | '.join(EMBEDDED_SUBSETS)}, "
            f"got {self.subset!r}",
        )
        if self.conditions is not None:
            require(kind == "acdc", "conditions", f"only used with kind 'acdc', got kind {kind!r}")
            conditions = self.conditions
            require(
                bool(conditions)
                and all(c in ACDC_CONDITIONS for c in conditions)
                and len(set(conditions)) == len(conditions),
                "conditions",
                f"expected null (all) or distinct conditions of {' | '.join(ACDC_CONDITIONS)}, "
                f"got {conditions!r}",
            )
        require(
            self.limit is None or self.limit >= 1,
            "limit",
            f"expected null or a positive integer, got {self.limit}",
        )
        if kind != "folder":
            require(
                self.class_map is None,
                "class_map",
                f"only used with kind 'folder', got kind {kind!r}",
            )
        elif self.labels:
            require(
                isinstance(self.class_map, dict),
                "class_map",
                "required for kind 'folder' with labels, expected a mapping {raw value: "
                "trainId, Cityscapes class name or ignore} (or labels: false for images "
                "without labels)",
            )
            try:
                self.mapping()
            except ValueError as err:
                raise ConfigError("class_map", str(err)) from err
            require(
                not self.shares_one_folder or bool(self.label_suffix),
                "label_suffix",
                f"images and labels share the folder {self.image_dir!r}: expected the suffix "
                "that tells a label from its image (e.g. _mask for a0.jpg and a0_mask.png)",
            )

    @property
    def shares_one_folder(self) -> bool:
        """A user's folder with its images and labels side by side (``a0.jpg``,
        ``a0_mask.png``), told apart by ``label_suffix``."""
        return (
            self.kind == "folder"
            and self.labels
            and os.path.normpath(self.image_dir) == os.path.normpath(self.label_dir)
        )

    def mapping(self) -> LabelMapping:
        """The raw-id -> trainId mapping of this data set's labels (an unlabelled folder,
        which needs no class map, has an empty one)."""
        if self.kind == "folder":
            class_map = {
                int(k) if isinstance(k, str) and k.isdigit() else k: v
                for k, v in (self.class_map or {}).items()
            }
            return mapping_from_class_map(class_map)
        return {
            "embedded": TRAIN_ID_MAPPING,
            "gta5": GTA5_MAPPING,
            "synthia": SYNTHIA_MAPPING,
            "cityscapes": CITYSCAPES_MAPPING,
            "acdc": TRAIN_ID_MAPPING,
            "dark_zurich": TRAIN_ID_MAPPING,
            "bdd100k": TRAIN_ID_MAPPING,
            "mapillary": MAPILLARY_MAPPING,
        }[self.kind]

    @property
    def label_format(self) -> LabelFormat:
        return {"synthia": LabelFormat.FIRST_CHANNEL16, "folder": LabelFormat.INDEX}.get(
            self.kind, LabelFormat.INDEX8
        )


@dataclass(frozen=True)
class Pair:
    """An image and its label (None when the split has no labels), named for caching."""

    name: str
    image: Path
    label: Path | None


@dataclass(frozen=True)
class _Folders:
    images: Path
    labels: Path
    image_suffixes: tuple[str, ...]
    label_suffix: str
    recursive: bool = False
    image_strip: str = ""  # folder only: user-given name suffixes dropped before pairing
    label_strip: str = ""
    prefix: str = ""  # prepended to pair names so that subsets sharing a root stay apart
    user_folder: bool = False  # kind folder: its keys name where files are looked for

    def expected_label(self, name: str) -> str:
        hint = " (label_dir, label_suffix)" if self.user_folder else ""
        return f"{self.labels / name}{self.label_strip}{self.label_suffix}{hint}"

    def expected_image(self, name: str) -> str:
        first, *others = self.image_suffixes
        alternatives = f" (or {', '.join(others)})" if others else ""
        hint = " (image_dir, image_suffix)" if self.user_folder else ""
        return f"{self.images / name}{self.image_strip}{first}{alternatives}{hint}"


@dataclass(frozen=True)
class _Layout:
    """Where a data set kind keeps its files, relative to the root.

    ``{subset}`` and (ACDC) ``{condition}`` in the folders and the name prefix are filled in
    from the spec; a new layout is one entry of :data:`_LAYOUTS`.
    """

    images: str
    labels: str
    image_suffixes: tuple[str, ...]
    label_suffix: str
    recursive: bool = False
    prefix: str = "{subset}/"


_LAYOUTS: dict[str, _Layout] = {
    "embedded": _Layout("{subset}/images", "{subset}/labels", (".png",), ".png"),
    "gta5": _Layout("images", "labels", (".png",), ".png", prefix=""),
    "synthia": _Layout("RGB", "GT/LABELS", (".png",), ".png", prefix=""),
    "cityscapes": _Layout(
        "leftImg8bit/{subset}", "gtFine/{subset}", ("_leftImg8bit.png",), "_gtFine_labelIds.png",
        recursive=True,
    ),
    "acdc": _Layout(
        "rgb_anon/{condition}/{subset}", "gt/{condition}/{subset}", ("_rgb_anon.png",),
        "_gt_labelTrainIds.png", recursive=True, prefix="{subset}/{condition}/",
    ),
    "dark_zurich": _Layout(
        "rgb_anon/{subset}/night", "gt/{subset}/night", ("_rgb_anon.png",),
        "_gt_labelTrainIds.png", recursive=True,
    ),
    "bdd100k": _Layout("images/10k/{subset}", "labels/sem_seg/masks/{subset}", (".jpg",), ".png"),
    "mapillary": _Layout("{subset}/images", "{subset}/labels", (".jpg",), ".png"),
}  # fmt: skip


def _folders(spec: DatasetSpec, root: Path) -> list[_Folders]:
    """Where the images and labels of ``spec`` live: one entry per folder pair to scan."""
    if spec.kind == "folder":
        return [
            _Folders(
                root / spec.image_dir,
                root / spec.label_dir,
                IMAGE_EXTENSIONS,
                ".png",
                image_strip=spec.image_suffix,
                label_strip=spec.label_suffix,
                user_folder=True,
            )
        ]
    layout = _LAYOUTS[spec.kind]
    conditions = (spec.conditions or ACDC_CONDITIONS) if spec.kind == "acdc" else ("",)
    places = [{"subset": str(spec.subset), "condition": c} for c in conditions]
    return [
        _Folders(
            root / layout.images.format(**place),
            root / layout.labels.format(**place),
            layout.image_suffixes,
            layout.label_suffix,
            recursive=layout.recursive,
            prefix=layout.prefix.format(**place),
        )
        for place in places
    ]


def printable(path: Path) -> str:
    """A path as text that any console and CSV can hold (undecodable bytes as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def list_files(folder: Path, *, recursive: bool = True) -> tuple[list[Path], list[Path]]:
    """The files in ``folder`` (and its sub-folders with ``recursive``), sorted, and the
    hidden files and folders left out; nothing when ``folder`` is missing.

    Linked folders are followed (``Path.rglob`` skips them: a data set linked in from
    another disk looked empty), except a link back to a folder above it, which would loop.
    Names starting with '.' (macOS ``._IMG_1.png`` and ``.DS_Store``,
    ``.ipynb_checkpoints/``) are not data, as most image tools treat them. A broken link is
    listed as a file, so that the reader names it instead of it vanishing.
    """
    files: list[Path] = []
    hidden: list[Path] = []
    above = {os.fspath(folder): frozenset({os.path.realpath(folder)})}  # real paths up to each
    for top, dirs, names in os.walk(folder, followlinks=True):
        here = Path(top)
        chain = above.pop(top)
        hidden += [here / name for name in dirs + names if name.startswith(".")]
        followed = []
        for name in dirs if recursive else ():
            real = os.path.realpath(here / name)
            if name.startswith("."):
                continue
            if real in chain:
                logger.warning("not following %s: it links back to %s", here / name, real)
                continue
            above[os.path.join(top, name)] = chain | {real}
            followed.append(name)
        dirs[:] = followed
        paths = [here / name for name in names if not name.startswith(".")]
        files += [p for p in paths if p.is_file() or is_broken_link(p)]
    return sorted(files), sorted(hidden)


def is_broken_link(path: Path) -> bool:
    """A link whose target is gone (a moved disk, a deleted original): a file to name."""
    return path.is_symlink() and not path.exists()


def broken_link_error(path: Path, expected: str) -> DataError:
    return DataError(
        f"{printable(path)}: a broken link ({printable(Path(os.readlink(path)))} does not "
        f"exist); expected {expected} (restore the file or remove the link)"
    )


def _scan(
    folder: Path,
    suffixes: tuple[str, ...],
    strip: str,
    recursive: bool,
    *,
    only: str = "",
    without: str = "",
) -> tuple[dict[str, Path], list[DataError]]:
    """``{name: path}`` of the files ending in one of ``suffixes``; names drop it and ``strip``.

    ``only`` / ``without``: read only the files whose names end (do not end) with it, case
    ignored: labels and images side by side in one folder.

    Names keep sub-folders (Cityscapes cities) so that they stay unique. A name two files
    would share (``a.png`` and ``a.jpg``), a file name that is not UTF-8 (no CSV or report
    can hold it) and a broken link are problems, like unpaired files: neither file is used.
    Hidden files are skipped and linked folders followed (:func:`list_files`).
    """
    found: dict[str, Path] = {}
    problems, clashing = [], set()
    for path in list_files(folder, recursive=recursive)[0]:
        lower = path.name.lower()
        suffix = next((s for s in suffixes if lower.endswith(s.lower())), None)
        if suffix is None or not lower.endswith(only.lower()):
            continue
        if without and lower.endswith(without.lower()):
            continue
        if is_broken_link(path):
            problems.append(broken_link_error(path, "a data file"))
            continue
        if printable(path) != str(path):
            problems.append(
                DataError(
                    f"{printable(path)}: the file name is not valid UTF-8; expected UTF-8 "
                    "file names (rename the file)"
                )
            )
            continue
        stem = path.name[: len(path.name) - len(suffix)]
        if strip and stem.lower().endswith(strip.lower()):  # as the extension: case ignored
            stem = stem[: len(stem) - len(strip)]
        name = (path.parent.relative_to(folder) / stem).as_posix()
        if name in found:
            clashing.add(name)
            problems.append(
                DataError(
                    f"{path}: has the same name {name!r} as {found[name]}, so one would hide "
                    "the other; expected one file per name (rename or remove one of them)"
                )
            )
            continue
        found[name] = path
    for name in clashing:
        del found[name]
    return found, problems


# Unread entries a warning names before it says "and N more".
_UNREAD_NAMED = 5


def unread_entries(spec: DatasetSpec, root: Path) -> list[str]:
    """What a user's folder data set (kind ``folder``) holds that ingestion will not read:
    one line per image or label folder with subfolders (the layout is flat) or files of
    other types in it. The official layouts hold other files by design (Cityscapes' colour
    and instance labels): they are not listed."""
    if spec.kind != "folder":
        return []
    (where,) = _folders(spec, root)
    places = [(where.images, where.image_suffixes)]
    if spec.shares_one_folder:
        places = [(where.images, (*where.image_suffixes, where.label_suffix))]
    elif spec.labels:
        places.append((where.labels, (where.label_suffix,)))
    others = {folder.resolve() for folder, _ in places if folder.is_dir()}
    notes = []
    for folder, suffixes in places:
        if not folder.is_dir():
            continue
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        folders = [p for p in entries if p.is_dir() and p.resolve() not in others]
        files = [
            p
            for p in entries
            if not p.is_dir() and not p.name.lower().endswith(tuple(x.lower() for x in suffixes))
        ]
        parts = []
        if folders:
            parts.append(f"subfolders {_named(folders, '/')} (the folder layout is flat)")
        if files:
            parts.append(f"files not ending in {' or '.join(suffixes)}: {_named(files, '')}")
        if parts:
            notes.append(f"{folder}: not read: {'; '.join(parts)}")
    return notes


def _named(paths: list[Path], end: str) -> str:
    named = ", ".join(printable(Path(p.name)) + end for p in paths[:_UNREAD_NAMED])
    more = len(paths) - _UNREAD_NAMED
    return named + (f" and {more} more" if more > 0 else "")


def find_pairs(spec: DatasetSpec, root: Path) -> tuple[list[Pair], list[DataError]]:
    """Pairs sorted by name, and one problem per unpaired file (the caller stops or skips).

    A missing folder raises at once: there is nothing to skip to.
    """
    images: dict[str, tuple[_Folders, Path]] = {}
    labels: dict[str, tuple[_Folders, Path]] = {}
    problems: list[DataError] = []
    for where in _folders(spec, root):
        check_folder(where.images, f"the {spec.kind} images ({where.expected_image('*')})")
        # Side by side in one folder, a label is told from an image by its suffix.
        label_end = where.label_strip + where.label_suffix if spec.shares_one_folder else ""
        found, bad = _scan(
            where.images, where.image_suffixes, where.image_strip, where.recursive,
            without=label_end,
        )  # fmt: skip
        images.update({where.prefix + name: (where, path) for name, path in found.items()})
        problems += bad
        if spec.labels:
            check_folder(where.labels, f"the {spec.kind} labels ({where.expected_label('*')})")
            found, bad = _scan(
                where.labels, (where.label_suffix,), where.label_strip, where.recursive,
                only=label_end,
            )  # fmt: skip
            labels.update({where.prefix + name: (where, path) for name, path in found.items()})
            problems += bad
    if not spec.labels:
        return [Pair(name, images[name][1], None) for name in sorted(images)][
            : spec.limit
        ], problems
    pairs = []
    for name in sorted(images.keys() | labels.keys())[: spec.limit]:
        where, path = images.get(name) or labels[name]
        local = name[len(where.prefix) :]
        if name not in labels:
            problems.append(
                DataError(f"{path}: image without a label; expected {where.expected_label(local)}")
            )
        elif name not in images:
            problems.append(
                DataError(
                    f"{path}: label without an image; expected an image {where.expected_image(local)}"
                )
            )
        else:
            pairs.append(Pair(name, images[name][1], labels[name][1]))
    return pairs, problems
