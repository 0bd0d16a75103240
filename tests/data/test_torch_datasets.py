import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from hrda_kedro.data import torch_datasets
from hrda_kedro.data.torch_datasets import ManifestDataset, resize_label_nearest
from hrda_kedro.data.validation import read_image
from tests.data.helpers import write_index, write_png16, write_rgb


@pytest.fixture
def manifest(tmp_path):
    pixels = write_rgb(tmp_path / "a.png", 6, 10)
    labels = np.arange(60).reshape(6, 10) % 19
    write_index(tmp_path / "a_label.png", labels)
    write_rgb(tmp_path / "b.png", 6, 10, seed=1)
    table = pd.DataFrame({
        "image_path": [str(tmp_path / "a.png"), str(tmp_path / "b.png")],
        "label_path": [str(tmp_path / "a_label.png"), np.nan],
        "load_height": [12, 6], "load_width": [20, 10],
    })  # fmt: skip
    return table, pixels, labels


def test_items_hold_uint8_images_and_int64_labels(manifest):
    table, pixels, labels = manifest
    item = ManifestDataset(table, resize=False)[0]
    assert (
        item["index"] == 0
        and item["image"].dtype == torch.uint8
        and item["image"].shape == (3, 6, 10)
    )
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), pixels)
    assert item["label"].dtype == torch.int64
    np.testing.assert_array_equal(item["label"].numpy(), labels)
    assert "label" not in ManifestDataset(table)[1]  # no label_path in the manifest
    assert "label" not in ManifestDataset(table, labels=False)[0]


def test_training_reads_every_image_mode_as_ingestion_and_predict_do(tmp_path):
    """Pillow's ``convert("RGB")`` here clipped 16-bit grayscale to white and dropped alpha,
    where ingestion's check and ``predict`` composite and keep the high byte."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (6, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., 0]).save(tmp_path / "gray.png")
    write_png16(tmp_path / "deep.png", rng.integers(0, 65536, (6, 10)))
    write_index(tmp_path / "palette.png", rng.integers(0, 256, (6, 10)), mode="P")
    paths = [str(tmp_path / f"{n}.png") for n in ("rgba", "gray", "deep", "palette")]
    table = pd.DataFrame({"image_path": paths, "label_path": [None] * 4,
                          "load_height": [6] * 4, "load_width": [10] * 4})  # fmt: skip
    dataset = ManifestDataset(table, labels=False)
    for index, path in enumerate(paths):
        loaded = dataset[index]["image"].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(loaded, read_image(path), err_msg=path)


def test_resize_on_load_keeps_label_values(manifest):
    table, _, labels = manifest
    item = ManifestDataset(table)[0]
    assert item["image"].shape == (3, 12, 20) and item["label"].shape == (12, 20)
    np.testing.assert_array_equal(item["label"][::2, ::2].numpy(), labels)  # nearest, 2x


def test_labels_resize_as_opencv_inter_nearest(tmp_path):
    """OpenCV INTER_NEAREST (mmcv's 'nearest'): src = floor(dst * src_size / dst_size).
    5 -> 8: dst * 0.625 -> 0, 0, 1, 1, 2, 3, 3, 4 (pixel-centre nearest would give
    0, 0, 1, 2, 2, 3, 4, 4); 8 -> 5: dst * 1.6 -> 0, 1, 3, 4, 6 (centre: 0, 2, 4, 5, 7)."""
    row = torch.arange(5)[None]
    assert resize_label_nearest(row, (1, 8)).tolist() == [[0, 0, 1, 1, 2, 3, 3, 4]]
    column = torch.arange(8)[:, None]
    assert resize_label_nearest(column, (5, 1)).flatten().tolist() == [0, 1, 3, 4, 6]
    # the manifest's loader uses it: a 5x8 label loaded at 8x5
    labels = np.arange(40).reshape(5, 8) % 19
    write_rgb(tmp_path / "c.png", 5, 8)
    write_index(tmp_path / "c_label.png", labels)
    table = pd.DataFrame({
        "image_path": [str(tmp_path / "c.png")], "label_path": [str(tmp_path / "c_label.png")],
        "load_height": [8], "load_width": [5],
    })  # fmt: skip
    loaded = ManifestDataset(table)[0]["label"].numpy()
    np.testing.assert_array_equal(loaded, labels[[0, 0, 1, 1, 2, 3, 3, 4]][:, [0, 1, 3, 4, 6]])


def test_cache_decodes_each_file_once(manifest, monkeypatch):
    table, _, _ = manifest
    opened = []
    real_open = torch_datasets.Image.open
    monkeypatch.setattr(
        torch_datasets.Image, "open", lambda path: opened.append(path) or real_open(path)
    )
    dataset = ManifestDataset(table, cache=True)
    first, again = dataset[0], dataset[0]
    assert len(opened) == 2  # image and label, once
    assert torch.equal(first["image"], again["image"]) and len(dataset) == 2


def test_empty_or_incomplete_manifest():
    with pytest.raises(ValueError, match="expected at least one row"):
        ManifestDataset(pd.DataFrame({"image_path": []}))
    with pytest.raises(ValueError, match=r"missing columns \['load_height', 'load_width'\]"):
        ManifestDataset(pd.DataFrame({"image_path": ["x"], "label_path": ["y"]}))
