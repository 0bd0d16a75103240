"""Tiny image/label files and folder trees in each real layout, for the data tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_rgb(path: Path, height: int = 6, width: int = 10, seed: int = 0) -> np.ndarray:
    """A random 8-bit RGB PNG (or JPEG by suffix); returns its pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_index(path: Path, ids: np.ndarray, mode: str = "L") -> None:
    """An 8-bit label in mode ``L`` or ``P`` (GTA5 ships palette PNGs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(ids, dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "P":
        image = Image.new("P", image.size)
        image.frombytes(pixels.tobytes())
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    image.save(path)


def write_png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit PNG with 1-4 channels, which Pillow cannot write (SYNTHIA's label format)."""
    data = np.asarray(array, dtype=">u2")
    height, width = data.shape[:2]
    channels = 1 if data.ndim == 2 else data.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + data[y].tobytes() for y in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def truncate(path: Path) -> None:
    """Keep the first half of a file: a classic interrupted copy."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# Raw ids laid out in a 6x10 label, with the trainIds the reference says they map to.
GTA_IDS = np.array(
    [[7, 8, 11, 12, 13, 17, 19, 20, 21, 22], [23, 24, 25, 26, 27, 28, 31, 32, 33, 0]] * 3
)
GTA_TRAIN = np.array([list(range(10)), [*range(10, 19), 255]] * 3)
SYNTHIA_IDS = np.array(
    [[3, 4, 2, 21, 5, 7, 15, 9, 6, 1], [10, 17, 8, 19, 12, 11, 0, 16, 18, 20]] * 3
)
SYNTHIA_TRAIN = np.array(
    [[0, 1, 2, 3, 4, 5, 6, 7, 8, 10], [11, 12, 13, 15, 17, 18, 255, 9, 14, 16]] * 3
)


def gta_tree(root: Path, names: tuple[str, ...] = ("00001", "00002")) -> Path:
    for i, name in enumerate(names):
        write_rgb(root / "images" / f"{name}.png", seed=i)
        write_index(root / "labels" / f"{name}.png", GTA_IDS, mode="P")
    return root


def synthia_tree(root: Path, names: tuple[str, ...] = ("0000000", "0000001")) -> Path:
    for i, name in enumerate(names):
        write_rgb(root / "RGB" / f"{name}.png", seed=i)
        instance = np.full_like(SYNTHIA_IDS, 700)  # the second channel holds instance ids
        write_png16(
            root / "GT" / "LABELS" / f"{name}.png",
            np.stack([SYNTHIA_IDS, instance, instance * 0], axis=-1),
        )
    return root


def cityscapes_tree(
    root: Path, subset: str, ids: np.ndarray, cities: tuple[str, ...] = ("aachen", "bonn")
) -> Path:
    for i, city in enumerate(cities):
        stem = f"{city}_000000_00001{i}"
        write_rgb(
            root / "leftImg8bit" / subset / city / f"{stem}_leftImg8bit.png", *ids.shape, seed=i
        )
        write_index(root / "gtFine" / subset / city / f"{stem}_gtFine_labelIds.png", ids)
        write_rgb(root / "gtFine" / subset / city / f"{stem}_gtFine_color.png", *ids.shape, seed=9)
    return root
