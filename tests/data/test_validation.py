import numpy as np
import pytest
from PIL import Image

from hrda_kedro.data import DataError
from hrda_kedro.data.labels import GTA5_MAPPING, SYNTHIA_MAPPING
from hrda_kedro.data.validation import (
    LabelFormat,
    check_folder,
    check_label,
    read_image,
    read_image_noting_mode,
    read_raw_label,
)
from tests.data.helpers import SYNTHIA_IDS, truncate, write_index, write_png16, write_rgb


def test_reads_rgb_png_and_jpeg(tmp_path):
    pixels = write_rgb(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), pixels)
    write_rgb(tmp_path / "b.jpg")
    assert read_image(tmp_path / "b.jpg").shape == (6, 10, 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "file not found; expected a readable image"),
        (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\); expected a readable image"),
        (
            lambda p: p.write_bytes(b"not a png at all"),
            r"not a readable image .*; expected a readable image \(PNG or JPEG\)",
        ),
        (lambda p: (write_rgb(p, 64, 64), truncate(p)), "cannot decode, truncated or corrupt"),
    ],
    ids=["missing", "empty", "corrupt", "truncated"],
)
def test_bad_images_name_the_file_and_what_was_expected(tmp_path, make, message):
    path = tmp_path / "my photo.png"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        read_image(path)
    assert str(info.value).startswith(str(path))


def test_reads_labels_in_each_format(tmp_path):
    ids = np.arange(60).reshape(6, 10) % 34
    write_index(tmp_path / "p.png", ids, mode="P")
    write_index(tmp_path / "l.png", ids)
    for name in ("p.png", "l.png"):
        np.testing.assert_array_equal(read_raw_label(tmp_path / name, LabelFormat.INDEX8), ids)
    write_png16(
        tmp_path / "s.png", np.stack([SYNTHIA_IDS, SYNTHIA_IDS * 0 + 900, SYNTHIA_IDS * 0], axis=-1)
    )
    np.testing.assert_array_equal(
        read_raw_label(tmp_path / "s.png", LabelFormat.FIRST_CHANNEL16), SYNTHIA_IDS
    )
    write_png16(tmp_path / "g.png", np.full((2, 3), 300))
    assert read_raw_label(tmp_path / "g.png", LabelFormat.INDEX).tolist() == [[300] * 3] * 2


def test_bad_labels(tmp_path):
    write_rgb(tmp_path / "rgb.png")
    with pytest.raises(
        DataError, match=r"rgb.png: label mode is RGB; expected an 8-bit single-channel PNG label"
    ):
        read_raw_label(tmp_path / "rgb.png", LabelFormat.INDEX8)
    write_png16(tmp_path / "s.png", np.zeros((32, 32, 3)))
    truncate(tmp_path / "s.png")
    with pytest.raises(DataError, match="s.png: cannot decode, truncated or corrupt .*SYNTHIA"):
        read_raw_label(tmp_path / "s.png", LabelFormat.FIRST_CHANNEL16)
    Image.new("RGB", (4, 4)).save(tmp_path / "s.jpg")
    with pytest.raises(DataError, match="s.jpg: a JPEG file; expected a PNG label"):
        read_raw_label(tmp_path / "s.jpg", LabelFormat.FIRST_CHANNEL16)


@pytest.mark.parametrize("label_format", [LabelFormat.INDEX8, LabelFormat.INDEX])
def test_a_jpeg_saved_under_a_png_name_is_not_a_label(tmp_path, label_format):
    """Its compression turns the edges between classes into other, valid-looking ids."""
    ids = np.repeat(np.array([[7, 8, 26, 0]], np.uint8), 8, axis=0).repeat(8, axis=1)
    Image.fromarray(ids).save(tmp_path / "lab.png", format="JPEG", quality=90)
    with pytest.raises(DataError, match=r"lab.png: a JPEG file; expected .*PNG label"):
        read_raw_label(tmp_path / "lab.png", label_format)


def test_label_of_another_size_or_with_unknown_values(tmp_path):
    image, label = tmp_path / "img.png", tmp_path / "lab.png"
    with pytest.raises(
        DataError, match=r"lab.png: label is 8x4 \(WxH\) but its image .*img.png is 10x6; expected"
    ):
        check_label(np.zeros((4, 8), np.uint8), label, (6, 10), image, GTA5_MAPPING)
    raw = np.full((6, 10), 7, np.uint8)
    raw[0, :2] = (40, 41)
    with pytest.raises(
        DataError,
        match=r"lab.png: label values 40, 41 are outside the gta5 mapping; expected Cityscapes label ids 0-33",
    ):
        check_label(raw, label, (6, 10), image, GTA5_MAPPING)
    with pytest.raises(
        DataError,
        match=r"values 23, 24, .*, 32, \.\.\. are outside the synthia mapping; expected SYNTHIA class ids",
    ):
        check_label(np.arange(23, 60).reshape(1, -1), label, (1, 37), image, SYNTHIA_MAPPING)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="nope: folder not found; expected the GTA5 images"):
        check_folder(tmp_path / "nope", "the GTA5 images")


def test_every_image_mode_reads_as_opencv_reads_it_and_names_its_mode(tmp_path):
    """Training refused grayscale, RGBA, palette, CMYK and 16-bit images that ``predict``
    read and OpenCV's ``imread`` (the official loader) converts; one conversion serves both."""
    gray = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    pixels, mode = read_image_noting_mode(tmp_path / "gray.png")
    assert (pixels == gray[..., None]).all() and mode == "grayscale (L)"

    write_png16(tmp_path / "deep.png", np.array([[0, 1000], [40000, 65535]]))
    pixels, mode = read_image_noting_mode(tmp_path / "deep.png")
    assert pixels[..., 0].tolist() == [[0, 3], [156, 255]] and mode == "16-bit grayscale"

    deep_rgb = np.stack([np.array([[0, 1000], [40000, 65535]])] * 3, axis=-1)
    write_png16(tmp_path / "deep_rgb.png", deep_rgb)  # the high byte, as OpenCV keeps it
    pixels, mode = read_image_noting_mode(tmp_path / "deep_rgb.png")
    assert pixels[..., 1].tolist() == [[0, 3], [156, 255]] and mode == "16-bit RGB"

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red; transparent pixels take the mean colour
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    pixels, mode = read_image_noting_mode(tmp_path / "alpha.png")
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[1, 1].tolist() == [124, 116, 104]
    assert mode == "RGBA"

    write_index(tmp_path / "palette.png", np.array([[1, 2]]), mode="P")
    pixels, mode = read_image_noting_mode(tmp_path / "palette.png")
    assert pixels.tolist() == [[[1, 254, 0], [2, 253, 1]]] and mode == "palette (P)"

    Image.new("CMYK", (3, 2), (0, 255, 255, 0)).save(tmp_path / "print.jpg", quality=100)
    pixels, mode = read_image_noting_mode(tmp_path / "print.jpg")
    assert pixels.shape == (2, 3, 3) and mode == "CMYK"
    assert pixels[..., 0].min() > 200 and pixels[..., 1:].max() < 60  # red, as printed

    write_rgb(tmp_path / "plain.png")
    assert read_image_noting_mode(tmp_path / "plain.png")[1] is None

    rgb = write_rgb(tmp_path / "photo.png", height=3, width=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    assert read_image(tmp_path / "phone.jpg").shape == (5, 3, 3)


def test_an_exif_rotated_photo_reads_upright_for_training_and_predict_alike(tmp_path):
    """Training read the stored pixels (a portrait phone photo lay on its side, its label
    drawn upright refused as another size) while predict turned it upright; OpenCV's
    imread, the official loader, turns it too."""
    import pandas as pd

    from hrda_kedro.data.torch_datasets import ManifestDataset

    stored = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    path = tmp_path / "portrait.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    trained = read_image(path)
    assert trained.shape == (128, 64, 3)
    manifest = pd.DataFrame({"image_path": [str(path)], "label_path": [None],
                             "load_height": [128], "load_width": [64]})  # fmt: skip
    loaded = ManifestDataset(manifest, labels=False)[0]["image"]
    np.testing.assert_array_equal(loaded.permute(1, 2, 0).numpy(), trained)
