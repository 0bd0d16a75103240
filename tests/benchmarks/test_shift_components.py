"""benchmarks/shift_components.py: the scenes are target-val's, drawn with part of the shift;
all of it gives target-val as ingested, and each model is scored with its own windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrda_kedro.data.streets import SHIFT_COMPONENTS, image_rng, render_street
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.params import parse
from hrda_kedro.runtime.models import build_model
from tests.benchmarks import load_script

EMBEDDED = {"seed": 0, "height": 64, "width": 128, "domain_shift": 0.6, "focal": 0.55}


def _script():
    return load_script("shift_components")


def test_variants_are_none_each_component_all_but_each_and_all() -> None:
    variants = _script().shift_variants()
    assert variants["none"] == set() and variants["all"] == set(SHIFT_COMPONENTS)
    assert variants["+illumination"] == {"illumination"}
    assert variants["all but layout"] == set(SHIFT_COMPONENTS) - {"layout"}
    assert len(variants) == 2 + 2 * len(SHIFT_COMPONENTS)


@pytest.mark.parametrize("pixel_level_shift", [True, False])
def test_the_whole_shift_draws_target_val_as_ingested(pixel_level_shift: bool) -> None:
    embedded = {**EMBEDDED, "pixel_level_shift": pixel_level_shift}
    scenes = _script().draw_scenes(embedded, set(SHIFT_COMPONENTS), 2)
    for index, (image, label) in enumerate(scenes):
        rng = image_rng(0, "target_val", index)
        ingested = render_street(
            "target", 64, 128, rng, 0.6, 0.55, pixel_level_shift=pixel_level_shift
        )
        assert np.array_equal(image.permute(1, 2, 0).numpy(), ingested[0])
        assert np.array_equal(label.numpy(), ingested[1])


def test_without_the_layout_component_the_scenes_keep_the_same_labels() -> None:
    script = _script()
    none = script.draw_scenes(EMBEDDED, set(), 2)
    lit = script.draw_scenes(EMBEDDED, {"illumination", "palette"}, 2)
    moved = script.draw_scenes(EMBEDDED, {"layout"}, 2)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(none, lit, strict=True))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(none, lit, strict=True))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(none, moved, strict=True))


@pytest.mark.usefixtures("one_thread")
def test_scores_are_percentages_and_the_confident_share_follows_the_threshold() -> None:
    params = parse(
        ModelConfig,
        {
            "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
            "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
        },
        "model",
    )
    net = build_model(params).eval()
    scenes = _script().draw_scenes(EMBEDDED, set(), 1)
    everything = _script().score(net, params.sliding_windows(), scenes, threshold=0.0)
    nothing = _script().score(net, params.sliding_windows(), scenes, threshold=1.01)
    assert everything["confident%"] == 100.0 and nothing["confident%"] == 0.0
    assert everything["miou"] == nothing["miou"] and 0 <= everything["miou"] <= 100
    assert 0 <= everything["small_miou"] <= 100
