"""benchmarks/small_classes.py: the source-val split measures the domain gap on unseen images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from hrda_kedro.data.streets import image_rng, render_street

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "small_classes.py"


def _script():
    spec = importlib.util.spec_from_file_location("small_classes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_source_val_draws_fresh_source_images_after_the_training_split() -> None:
    embedded = {
        "seed": 0,
        "height": 64,
        "width": 128,
        "domain_shift": 0.6,
        "sizes": {"source_train": 3, "target_train": 2, "target_val": 2},
    }
    items = _script()._source_val(embedded, 2)
    assert len(items) == 2
    trained = [
        render_street("source", 64, 128, image_rng(0, "source_train", i), 0.6)[0] for i in range(3)
    ]
    for offset, item in enumerate(items):
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 64, 128)
        assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 128)
        # The generator's image for the index right after source_train: same domain, unseen.
        image, label = render_street(
            "source", 64, 128, image_rng(0, "source_train", 3 + offset), 0.6
        )
        assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), image)
        assert np.array_equal(item["label"].numpy(), label)
        assert not any(np.array_equal(image, seen) for seen in trained)
