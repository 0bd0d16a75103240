"""Corrupt 16-bit PNG labels raise a DataError naming the file instead of crashing the process.

torchvision's decode_png segfaults on libpng errors met while reading image rows (a bad row
filter byte after bit rot, an IDAT CRC or zlib error, too little data), so such bytes must
never reach it. Every test here reads in-process: a regression would kill the pytest worker,
which is why ``test_a_corrupt_label_does_not_kill_the_process`` runs one read in a subprocess
first and reports the exit status plainly.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hrda_kedro.data import DataError
from hrda_kedro.data.ingest import EmbeddedSettings, IngestionDatasets, IngestionSettings, ingest
from hrda_kedro.data.layouts import DatasetSpec
from hrda_kedro.data.streets import SplitSizes
from hrda_kedro.data.validation import LabelFormat, read_raw_label
from tests.data.helpers import SYNTHIA_IDS, cityscapes_tree, synthia_tree, write_png16, write_rgb

SYNTHIA = LabelFormat.FIRST_CHANNEL16
EXPECTED = "expected a PNG label whose first channel holds the ids"


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(_chunk(tag, body) for tag, body in chunks)


def _rewrite_idat(path: Path, change: Callable[[bytes], bytes]) -> None:
    """Replace the (single) IDAT's filtered rows by ``change(rows)``, recompressed with valid
    zlib and chunk CRCs: only what ``change`` did is wrong."""
    chunks = _chunks(path.read_bytes())
    (i,) = [n for n, (tag, _) in enumerate(chunks) if tag == b"IDAT"]
    chunks[i] = (b"IDAT", zlib.compress(change(zlib.decompress(chunks[i][1]))))
    path.write_bytes(_png(chunks))


def _label(path: Path) -> np.ndarray:
    """A 3-channel 16-bit SYNTHIA-style label (6x10, 61-byte rows) with values above 255."""
    array = np.stack([SYNTHIA_IDS, SYNTHIA_IDS * 0 + 900, SYNTHIA_IDS * 0 + 65535], axis=-1)
    write_png16(path, array)
    return array


def _bad_filter(path: Path) -> None:
    _rewrite_idat(path, lambda rows: rows[:122] + b"\x07" + rows[123:])  # row 2's filter byte


def _flip_idat_byte(path: Path) -> None:  # bit rot inside IDAT, CRC left as it was
    data = bytearray(path.read_bytes())
    data[data.index(b"IDAT") + 6] ^= 0x10
    path.write_bytes(bytes(data))


def _bad_adler(path: Path) -> None:  # zlib stream whose Adler-32 checksum is wrong
    chunks = _chunks(path.read_bytes())
    body = chunks[1][1]
    chunks[1] = (b"IDAT", body[:-4] + bytes(b ^ 0xFF for b in body[-4:]))
    path.write_bytes(_png(chunks))


def _split_idat(path: Path) -> None:  # IDAT chunks with another chunk between them
    chunks = _chunks(path.read_bytes())
    body = chunks[1][1]
    chunks[1:2] = [(b"IDAT", body[:10]), (b"tEXt", b"a\x00b"), (b"IDAT", body[10:])]
    path.write_bytes(_png(chunks))


CORRUPTIONS = [
    (_bad_filter, "invalid row filter type 7, expected 0-4"),
    (_flip_idat_byte, "CRC error in the IDAT chunk"),
    (_bad_adler, "corrupt compressed image data"),
    (lambda p: _rewrite_idat(p, lambda rows: rows[:-5]), "image data is 361 bytes, expected 366"),
    (lambda p: _rewrite_idat(p, lambda rows: rows + b"\0" * 61), "more image data than"),
    (_split_idat, "IDAT chunks are not consecutive"),
    (lambda p: p.write_bytes(p.read_bytes()[:-12]), "file ends before the IEND chunk"),
]


def test_a_corrupt_label_does_not_kill_the_process(tmp_path):
    path = tmp_path / "0000001.png"
    _label(path)
    _bad_filter(path)
    code = (
        "import sys; from pathlib import Path\n"
        "from hrda_kedro.data import DataError\n"
        "from hrda_kedro.data.validation import LabelFormat, read_raw_label\n"
        "try:\n"
        "    read_raw_label(Path(sys.argv[1]), LabelFormat.FIRST_CHANNEL16)\n"
        "except DataError as err:\n"
        "    print(err)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.startswith(f"{path}: cannot decode, truncated or corrupt")


@pytest.mark.parametrize(("corrupt", "message"), CORRUPTIONS)
def test_corrupt_16bit_label_raises_data_error_naming_the_file(tmp_path, corrupt, message):
    path = tmp_path / "0000001.png"
    _label(path)
    corrupt(path)
    with pytest.raises(DataError, match=f"cannot decode, truncated or corrupt .*{message}") as info:
        read_raw_label(path, SYNTHIA)
    assert str(info.value).startswith(f"{path}: ")
    assert EXPECTED in str(info.value)


def _filtered(array: np.ndarray) -> bytes:
    """Big-endian rows of ``array`` with PNG filters 0-4 in turn, as an encoder may choose."""
    rows = array.astype(">u2").reshape(array.shape[0], -1).view(np.uint8).astype(np.int64)
    bpp = 2 * (array.shape[2] if array.ndim == 3 else 1)
    out, prior = [], np.zeros_like(rows[0])
    for y, row in enumerate(rows):
        kind = y % 5
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        if kind == 4:  # Paeth
            p = left + prior - upper_left
            pa, pb, pc = abs(p - left), abs(p - prior), abs(p - upper_left)
            predictor = np.where(
                (pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upper_left)
            )
        else:
            predictor = [0 * row, left, prior, (left + prior) // 2][kind]
        out.append(bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes())
        prior = row
    return b"".join(out)


def _interlaced(array: np.ndarray) -> bytes:
    """Adam7 passes of ``array``, each row unfiltered (filter 0)."""
    out = []
    for x, y, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                         (1, 0, 2, 2), (0, 1, 1, 2)):  # fmt: skip
        part = array[y::dy, x::dx]
        if part.size:
            rows = part.astype(">u2").reshape(part.shape[0], -1)
            out += [b"\0" + row.tobytes() for row in rows]
    return b"".join(out)


def _write_encoded(path: Path, array: np.ndarray, rows: bytes, interlace: int) -> None:
    chunks = _chunks(path.read_bytes())  # the header of a plain write_png16 of ``array``
    header = chunks[0][1][:12] + bytes([interlace])
    path.write_bytes(_png([(b"IHDR", header), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]))


def test_valid_16bit_pngs_keep_their_exact_values(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (1, 2, 3, 4):
        shape = (13, 11) if channels == 1 else (13, 11, channels)
        array = rng.integers(0, 65536, shape)
        first = array if channels == 1 else array[..., 0]
        path = tmp_path / f"c{channels}.png"
        write_png16(path, array)
        np.testing.assert_array_equal(read_raw_label(path, SYNTHIA), first)
        _write_encoded(path, array, _filtered(array), interlace=0)  # filters 1-4 too
        np.testing.assert_array_equal(read_raw_label(path, SYNTHIA), first)
        _write_encoded(path, array, _interlaced(array), interlace=1)
        np.testing.assert_array_equal(read_raw_label(path, SYNTHIA), first)
    array = _label(tmp_path / "s.png")
    np.testing.assert_array_equal(read_raw_label(tmp_path / "s.png", SYNTHIA), array[..., 0])


def test_a_bad_filter_in_an_interlaced_pass_is_found(tmp_path):
    path = tmp_path / "i.png"
    array = np.arange(13 * 11 * 3).reshape(13, 11, 3) * 300
    write_png16(path, array)
    rows = bytearray(_interlaced(array))
    rows[-(11 * 6 + 1)] = 5  # the last row of the last pass
    _write_encoded(path, array, bytes(rows), interlace=1)
    with pytest.raises(DataError, match="i.png: .*invalid row filter type 5"):
        read_raw_label(path, SYNTHIA)


def test_8bit_png_written_by_pillow_still_reads_as_its_first_channel(tmp_path):
    pixels = write_rgb(tmp_path / "rgb.png", height=20, width=30, seed=3)  # adaptive filters
    np.testing.assert_array_equal(read_raw_label(tmp_path / "rgb.png", SYNTHIA), pixels[..., 0])


def test_skip_mode_skips_a_bit_rotten_synthia_label(tmp_path):
    root = synthia_tree(tmp_path / "syn")
    bad = root / "GT" / "LABELS" / "0000001.png"
    _bad_filter(bad)
    cs = cityscapes_tree(tmp_path / "cs", "train", np.arange(34).reshape(2, 17))
    cityscapes_tree(cs, "val", np.arange(34).reshape(2, 17))
    datasets = IngestionDatasets(
        DatasetSpec("synthia", str(root)),
        DatasetSpec("cityscapes", str(cs), subset="train"),
        DatasetSpec("cityscapes", str(cs), subset="val"),
    )

    def settings(skip: bool) -> IngestionSettings:
        embedded = EmbeddedSettings(
            root=str(tmp_path / "embedded"), height=32, width=64, sizes=SplitSizes(3, 2, 2)
        )
        return IngestionSettings(
            cache_dir=str(tmp_path / "cache"), workers=2, embedded=embedded, skip_bad_files=skip
        )

    with pytest.raises(DataError, match="0000001.png: cannot decode, truncated or corrupt"):
        ingest(settings(skip=False), datasets)
    result = ingest(settings(skip=True), datasets)
    assert result.manifests["source_train"]["name"].tolist() == ["0000000"]
    (skipped,) = result.report["splits"]["source_train"]["skipped"]
    assert skipped["file"] == str(bad)
    assert "invalid row filter type 7" in skipped["reason"]
