"""Checked reading of images and labels: every failure names the file and what was expected.

A bad file found during ingestion is far cheaper than one found hours into training, so
images are fully decoded (truncation shows only then). Any image mode is read as 8-bit
RGB the way OpenCV's ``imread`` (the official loader) reads it, for training and ``predict``
alike; labels are read as raw ids in the format of their data set and checked against
the size of their image and the ids their mapping knows.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hrda_kedro.data import DataError, MissingFolderError
from hrda_kedro.data.labels import LabelMapping

IMAGE = "a readable image (PNG or JPEG)"

# Pillow reports a bad file with many exception types (OSError, ValueError, SyntaxError,
# EOFError, struct.error, DecompressionBombError for oversized images, ValueError
# "Decompressed data too large" for a huge PNG text chunk...). Whatever it raises while
# opening or decoding one file means that file is unreadable, so all are caught and named.
_DECODE_ERRORS = (Exception,)


class LabelFormat(Enum):
    """How the raw ids of a data set's label files are stored."""

    INDEX8 = "an 8-bit single-channel PNG label (mode L or P)"
    INDEX = "a single-channel PNG label (8-bit L or P, or 16-bit grayscale)"
    FIRST_CHANNEL16 = "a PNG label whose first channel holds the ids (SYNTHIA, 16-bit)"


_MODE_NAMES = {
    "1": "1-bit black and white",
    "L": "grayscale (L)",
    "LA": "grayscale with alpha (LA)",
    "P": "palette (P)",
    "PA": "palette with alpha (PA)",
    "RGBA": "RGBA",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "I": "32-bit integer (I)",
    "F": "32-bit float (F)",
}


def _is_16bit(image: Image.Image) -> bool:
    # Pillow opens 48/64-bit PNGs as 8-bit RGB(A), dropping the low byte; the raw mode tells.
    return image.mode.startswith("I;16") or any(";16" in str(tile.args) for tile in image.tile)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_PNG_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# (x start, y start, x step, y step) of the seven Adam7 interlace passes.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


class _CorruptPng(ValueError):
    """A PNG that libpng would fail on; the caller names the file."""


def _png_chunks(data: bytes) -> tuple[bytes, bytes]:
    """IHDR body and the joined IDAT bodies, once every chunk is whole, named and CRC-correct."""
    if not data.startswith(_PNG_SIGNATURE):
        raise _CorruptPng("no PNG signature")
    pos, header, idat, idat_done = len(_PNG_SIGNATURE), None, [], False
    while True:
        if pos + 8 > len(data):
            raise _CorruptPng("file ends before the IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        name = kind.decode("latin-1")
        if length > 0x7FFFFFFF or not name.isascii() or not name.isalpha():
            raise _CorruptPng(f"invalid chunk header at byte {pos}")
        body = data[pos + 8 : pos + 8 + length]
        if pos + 12 + length > len(data):
            raise _CorruptPng(f"file ends inside the {name} chunk")
        if zlib.crc32(kind + body) != struct.unpack_from(">I", data, pos + 8 + length)[0]:
            raise _CorruptPng(f"CRC error in the {name} chunk at byte {pos}")
        if header is None and (name != "IHDR" or length != 13):
            raise _CorruptPng("first chunk is not a valid IHDR")
        if name == "IDAT":
            if idat_done:
                raise _CorruptPng("IDAT chunks are not consecutive")
            idat.append(body)
        elif idat:
            idat_done = True
        if name == "IHDR":
            header = body
        if name == "IEND":
            break
        pos += 12 + length
    if not idat:
        raise _CorruptPng("no IDAT chunk")
    return header, b"".join(idat)


def _check_png(data: bytes) -> None:
    """Raise :class:`_CorruptPng` unless libpng can read every image row of ``data``.

    torchvision's ``decode_png`` turns a libpng error into an exception only while the header
    is read; one while reading the rows (a bad IDAT CRC or zlib stream, too little data, a row
    filter byte over 4 after bit rot) longjmps out of the C++ frames and the whole process
    dies with a segfault, which no ``except`` or ``skip_bad_files`` can stop. So the data libpng
    would fail on is checked here first: every chunk's framing and CRC, the IDAT zlib stream
    (complete, Adler-32 correct, exactly the image's size) and every row's filter byte. That
    costs one extra inflate in C plus a strided numpy look, far cheaper than a second full
    decode, and Pillow cannot stand in as the decoder: it drops the low byte of 16-bit colour.
    """
    header, compressed = _png_chunks(data)
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", header
    )
    if (
        not 0 < width <= 0x7FFFFFFF
        or not 0 < height <= 0x7FFFFFFF
        or depth not in _PNG_BIT_DEPTHS.get(colour, ())
        or (compression, filtering) != (0, 0)
        or interlace not in (0, 1)
    ):
        raise _CorruptPng("invalid IHDR")
    passes = (
        [(width, height)]
        if interlace == 0
        else [((width - x + dx - 1) // dx, (height - y + dy - 1) // dy) for x, y, dx, dy in _ADAM7]
    )
    # (row length with its filter byte, rows) of each non-empty pass
    rows = [((w * _PNG_CHANNELS[colour] * depth + 7) // 8 + 1, h) for w, h in passes if w and h]
    size = sum(stride * h for stride, h in rows)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, size + 1)  # bounded: no zlib bomb
    except zlib.error as err:
        raise _CorruptPng(f"corrupt compressed image data: {err}") from err
    if len(raw) > size:
        raise _CorruptPng(f"more image data than the {width}x{height} image holds")
    if not inflater.eof:
        raise _CorruptPng("compressed image data ends early")
    if len(raw) < size:
        raise _CorruptPng(f"image data is {len(raw)} bytes, expected {size}")
    if inflater.unused_data:
        raise _CorruptPng("extra bytes after the compressed image data")
    filters, start = np.frombuffer(raw, dtype=np.uint8), 0
    for stride, h in rows:
        bad = np.flatnonzero(filters[start : start + stride * h : stride] > 4)
        if bad.size:
            raise _CorruptPng(
                f"invalid row filter type {filters[start + stride * bad[0]]}, expected 0-4"
            )
        start += stride * h


def _decode_png16(path: Path) -> np.ndarray:
    """``(C, H, W)`` of any PNG, 16-bit multi-channel included (Pillow keeps only the high byte).

    The bytes are checked by :func:`_check_png` first, and the same bytes are decoded, since
    torchvision's decoder crashes the process on data libpng rejects. torchvision's PNG
    decoder is deprecated in favour of TorchCodec (torchvision 0.29), which this project does
    not depend on; the warning is silenced here only.
    """
    # Deferred: torchvision's import loads torch._dynamo (2 s of every `kedro` command).
    from torchvision.io import ImageReadMode, decode_png

    data = path.read_bytes()
    _check_png(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        try:
            return decode_png(encoded, ImageReadMode.UNCHANGED).numpy()
        except RuntimeError as err:  # libpng's header errors, which it prints to stderr
            raise _CorruptPng("libpng rejects its header chunks") from err


def describe_mode(image: Image.Image) -> str:
    """A readable name of an opened image's pixel format, e.g. ``16-bit RGB``."""
    if _is_16bit(image):
        return "16-bit grayscale" if image.mode.startswith("I;16") else f"16-bit {image.mode}"
    return _MODE_NAMES.get(image.mode, image.mode)


def _open(path: Path, expected: str) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected {expected}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); expected {expected}")
    try:
        return Image.open(path)
    except UnidentifiedImageError as err:
        raise DataError(f"{path}: not a readable image ({err}); expected {expected}") from err
    except _DECODE_ERRORS as err:
        raise DataError(
            f"{path}: not a readable image ({type(err).__name__}: {err}); expected {expected}"
        ) from err


def _decode(image: Image.Image, path: Path, expected: str) -> np.ndarray:
    try:
        image.load()
    except _DECODE_ERRORS as err:
        raise DataError(
            f"{path}: cannot decode, truncated or corrupt ({err}); expected {expected}"
        ) from err
    return np.asarray(image)


_EXIF_ORIENTATION = 0x0112


def upright(image: Image.Image) -> Image.Image:
    """``image`` as viewers show it, its EXIF orientation applied, as OpenCV's ``imread``
    (mmcv's, the official loader's) and ``predict`` read photos; the same image when it
    has no orientation to apply (no copy)."""
    if image.getexif().get(_EXIF_ORIENTATION, 1) in (0, 1):
        return image
    return ImageOps.exif_transpose(image)


def read_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 of an image in any mode (:func:`rgb_pixels`), or a
    :class:`DataError` naming a missing, empty, unreadable or truncated file."""
    return read_image_noting_mode(path)[0]


def read_image_noting_mode(path: Path) -> tuple[np.ndarray, str | None]:
    """:func:`read_image`, with the readable name of the mode it was converted from
    (``None`` for 8-bit RGB), so that ingestion can say which images were converted."""
    path = Path(path)
    with _open(path, IMAGE) as file:
        # before decoding: Pillow forgets the tiles that tell 16-bit colour once it has loaded
        converted_from = None if file.mode == "RGB" and not _is_16bit(file) else describe_mode(file)
        _decode(file, path, IMAGE)
        try:
            return rgb_pixels(file), converted_from
        except _DECODE_ERRORS as err:  # a broken EXIF block or palette, e.g.
            raise DataError(
                f"{path}: cannot convert to RGB ({type(err).__name__}: {err}); expected {IMAGE}"
            ) from err


# Transparent pixels are composited onto the ImageNet mean colour: it normalises to zero,
# like the padding of sliding-window inference, so they carry no signal. (OpenCV drops
# alpha and keeps whatever colour lies under it: a deviation, docs/architecture.md.)
_BACKGROUND = (124, 116, 104)


def rgb_pixels(file: Image.Image) -> np.ndarray:
    """Writable ``(H, W, 3)`` uint8 of an opened image of any mode, upright (:func:`upright`).

    As OpenCV's ``imread(..., IMREAD_COLOR)`` reads it: grayscale and palette expand to
    three channels, 16-bit keeps its high byte (Pillow opens 16-bit colour that way
    already), CMYK and YCbCr convert; alpha (RGBA, LA, palette transparency) is composited
    onto the ImageNet mean colour.
    """
    image = upright(file)
    if image.mode.startswith("I"):  # 16-bit grayscale PNG (I;16, or I in older Pillow)
        pixels = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(pixels[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba)
    return np.array(image if image.mode == "RGB" else image.convert("RGB"))


def read_raw_label(path: Path, label_format: LabelFormat) -> np.ndarray:
    """``(H, W)`` raw ids (uint8 or uint16) of a label file, or a :class:`DataError`."""
    path = Path(path)
    expected = label_format.value
    with _open(path, expected) as image:
        # Only a lossless file holds ids: a JPEG saved under a .png name turns the edges
        # between classes into other, valid-looking ids.
        if image.format != "PNG":
            raise DataError(f"{path}: a {image.format} file; expected {expected}")
        if label_format is LabelFormat.FIRST_CHANNEL16:
            try:
                data = _decode_png16(path)
            except _DECODE_ERRORS as err:
                raise DataError(
                    f"{path}: cannot decode, truncated or corrupt ({err}); expected {expected}"
                ) from err
            return data[0]
        allowed = (
            ("L", "P")
            if label_format is LabelFormat.INDEX8
            else ("L", "P", "I;16", "I;16B", "I;16L")
        )
        if image.mode not in allowed:
            raise DataError(f"{path}: label mode is {describe_mode(image)}; expected {expected}")
        raw = _decode(image, path, expected)
    return raw.astype(np.uint16) if raw.dtype != np.uint8 else raw


def check_label(
    raw: np.ndarray,
    label_path: Path,
    image_hw: tuple[int, int],
    image_path: Path,
    mapping: LabelMapping,
) -> None:
    """Raise a :class:`DataError` unless ``raw`` matches its image's size and ``mapping``."""
    if raw.shape != image_hw:
        raise DataError(
            f"{label_path}: label is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image {image_path} is "
            f"{image_hw[1]}x{image_hw[0]}; expected a label of the same size as its image"
        )
    unknown = mapping.unknown_values(raw)
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (", ..." if len(unknown) > 10 else "")
        raise DataError(
            f"{label_path}: label values {shown} are outside the {mapping.name} mapping; "
            f"expected {mapping.description}"
        )


def check_folder(path: Path, expected: str) -> None:
    """Raise a :class:`MissingFolderError` unless ``path`` is an existing folder."""
    if not Path(path).is_dir():
        raise MissingFolderError(f"{path}: folder not found; expected {expected}")
