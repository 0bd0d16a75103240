"""Checked reading of images and labels: every failure names the file and what was expected.

A bad file found during ingestion is far cheaper than one found hours into training, so
images are fully decoded (truncation shows only then) and their mode is checked: the
networks expect 8-bit RGB, and Pillow would silently turn a grayscale, RGBA, palette or
16-bit file into something else. Labels are read as raw ids in the format of their data
set and checked against the size of their image and the ids their mapping knows.
"""

from __future__ import annotations

import warnings
from enum import Enum
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_png, read_file

from hrda_kedro.data import DataError
from hrda_kedro.data.labels import LabelMapping

RGB_IMAGE = "an 8-bit RGB image"

# Pillow reports a bad file with many exception types (OSError, ValueError, SyntaxError,
# EOFError, struct.error, DecompressionBombError for oversized images, ValueError
# "Decompressed data too large" for a huge PNG text chunk...). Whatever it raises while
# opening or decoding one file means that file is unreadable, so all are caught and named.
_DECODE_ERRORS = (Exception,)


class LabelFormat(Enum):
    """How the raw ids of a data set's label files are stored."""

    INDEX8 = "an 8-bit single-channel label (mode L or P)"
    INDEX = "a single-channel label (8-bit L or P, or 16-bit grayscale)"
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


def _decode_png16(path: Path) -> np.ndarray:
    """``(C, H, W)`` of any PNG, 16-bit multi-channel included (Pillow keeps only the high byte).

    torchvision's PNG decoder is deprecated in favour of TorchCodec (torchvision 0.29), which
    this project does not depend on; the warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_png(read_file(str(path)), ImageReadMode.UNCHANGED).numpy()


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


def read_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 of an 8-bit RGB image, or a :class:`DataError`."""
    path = Path(path)
    with _open(path, RGB_IMAGE) as image:
        if image.mode != "RGB" or _is_16bit(image):
            raise DataError(f"{path}: image mode is {describe_mode(image)}; expected {RGB_IMAGE}")
        return _decode(image, path, RGB_IMAGE)


# Transparent pixels are composited onto the ImageNet mean colour: it normalises to zero,
# like the padding of sliding-window inference, so they carry no signal.
_BACKGROUND = (124, 116, 104)


def read_image_as_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 of an image in any mode, converted as a viewer would show it.

    For user images (prediction) rather than training data: the EXIF orientation is
    applied, 16-bit grayscale is scaled to 8 bits (16-bit colour PNGs already open with
    their high byte), and alpha (RGBA, LA, palette transparency) is composited onto the
    ImageNet mean colour. Missing, empty, unreadable or truncated files raise a
    :class:`DataError` naming the file.
    """
    path = Path(path)
    expected = "a readable image (PNG or JPEG)"
    with _open(path, expected) as file:
        _decode(file, path, expected)
        try:
            return _as_rgb(file)
        except _DECODE_ERRORS as err:  # a broken EXIF block or palette, e.g.
            raise DataError(
                f"{path}: cannot convert to RGB ({type(err).__name__}: {err}); expected {expected}"
            ) from err


def _as_rgb(file: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(file)
    if image.mode.startswith("I"):  # 16-bit grayscale PNG (I;16, or I in older Pillow)
        pixels = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return np.repeat(pixels[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba)
    return np.array(image.convert("RGB"))  # writable, unlike np.asarray of an image


def read_raw_label(path: Path, label_format: LabelFormat) -> np.ndarray:
    """``(H, W)`` raw ids (uint8 or uint16) of a label file, or a :class:`DataError`."""
    path = Path(path)
    expected = label_format.value
    with _open(path, expected) as image:
        if label_format is LabelFormat.FIRST_CHANNEL16:
            if image.format != "PNG":
                raise DataError(f"{path}: a {image.format} file; expected {expected}")
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
    """Raise a :class:`DataError` unless ``path`` is an existing folder."""
    if not Path(path).is_dir():
        raise DataError(f"{path}: folder not found; expected {expected}")
