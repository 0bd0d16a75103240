"""Full-image prediction at any size: padding, batched stitching, the HRDA outputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hrda_kedro.hrda.inference import (
    predict_full_image,
    predict_full_image_branches,
    predict_full_image_labels,
    predict_full_image_with_attention,
    upsample_in_bands,
)
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.model_config import SlidingWindows
from hrda_kedro.hrda.networks import NetworkConfig, build_network
from hrda_kedro.hrda.windows import window_weight_map
from tests.hrda.test_model import NUM_CLASSES, CellNet


def whole_image_logits(net: CellNet, images: torch.Tensor) -> torch.Tensor:
    """The toy net on the whole image (zero padded to whole cells), upsampled, cropped."""
    o = net.output_stride
    height, width = images.shape[-2:]
    cells_h, cells_w = math.ceil(height / o), math.ceil(width / o)
    padded = F.pad(images, (0, cells_w * o - width, 0, cells_h * o - height))
    logits = F.interpolate(net(padded), scale_factor=o, mode="bilinear", align_corners=False)
    return logits[..., :height, :width]


# exact; not a multiple of anything (W, H = 3 mod o: the last pixels interpolate
# towards padding cells unless those are dropped); smaller than a window
IMAGE_SIZES = [(32, 48), (39, 51), (11, 15)]
WINDOWS = SlidingWindows((32, 32), (16, 16))


def test_windows_are_batched_across_windows_and_images() -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode="lr_only")
    predict_full_image(model, torch.randn(2, 3, 64, 96), SlidingWindows((32, 48), (16, 24), 4))
    # 3 x 3 windows x 2 images = 18 windows in chunks of 4, one LR pass each
    assert model.network.extract_calls == [4, 4, 4, 4, 2]


@pytest.mark.parametrize("image_hw", IMAGE_SIZES)
@pytest.mark.parametrize("batch_size", [None, 1, 5])
def test_hr_only_full_image_prediction_equals_the_whole_image_output(
    image_hw: tuple[int, int], batch_size: int | None
) -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode="hr_only", hr_window_batch=3)
    images = torch.randn(2, 3, *image_hw, generator=torch.Generator().manual_seed(1))
    logits = predict_full_image(model, images, WINDOWS._replace(batch_size=batch_size))
    assert logits.shape == (2, NUM_CLASSES, *image_hw)
    expected = whole_image_logits(model.network, images)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_hrda_single_window_prediction_is_the_upsampled_window_output() -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16))
    images = torch.randn(2, 3, 32, 48)
    logits = predict_full_image(model, images, SlidingWindows((32, 48), (16, 16)))
    fused = model.predict_window(images).fused
    expected = F.interpolate(fused, scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected)


def test_hrda_prediction_does_not_depend_on_the_window_batch() -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16))
    images = torch.randn(2, 3, 45, 70, generator=torch.Generator().manual_seed(3))
    whole = predict_full_image(model, images, WINDOWS)
    model.network.extract_calls.clear()
    chunked = predict_full_image(model, images, WINDOWS._replace(batch_size=4))
    # padded to 48 x 72: 2 x 4 context windows x 2 images = 16 windows, 4 per call
    assert model.network.extract_calls.count(4) == 4
    torch.testing.assert_close(chunked, whole)
    assert whole.shape == (2, NUM_CLASSES, 45, 70)


def test_full_image_inference_predicts_shared_detail_crops_once() -> None:
    # 32 x 64 image, 32 x 32 windows at stride 16: 3 windows, 27 detail crops, 21 distinct
    images = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(4))
    windows = SlidingWindows((32, 32), (16, 16))
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16)).eval()
    separate = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), hr_window_batch=27).eval()
    logits = predict_full_image(model, images, windows)
    assert model.network.extract_calls == [3 + 21]
    torch.testing.assert_close(logits, predict_full_image(separate, images, windows))


def test_predict_full_image_requires_windows_aligned_to_s_times_o() -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16))
    with pytest.raises(ValueError, match="align=8"):
        predict_full_image(model, torch.zeros(1, 3, 40, 40), SlidingWindows((36, 36), (16, 16)))


@pytest.mark.parametrize(("mode", "channels"), [("hrda", NUM_CLASSES), ("fixed_attention", 1)])
def test_prediction_with_attention_returns_the_same_logits(mode: str, channels: int) -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode=mode, fixed_attention=0.25)
    images = torch.randn(1, 3, 45, 70, generator=torch.Generator().manual_seed(4))
    logits, attention = predict_full_image_with_attention(
        model, images, WINDOWS._replace(batch_size=3)
    )
    torch.testing.assert_close(logits, predict_full_image(model, images, WINDOWS))
    assert attention.shape == (1, channels, 45, 70)
    assert 0 <= attention.min() and attention.max() <= 1
    if mode == "fixed_attention":
        torch.testing.assert_close(attention, torch.full_like(attention, 0.25))


def test_prediction_with_attention_has_none_without_an_attention_branch() -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode="lr_only")
    _, attention = predict_full_image_with_attention(model, torch.zeros(1, 3, 32, 32), WINDOWS)
    assert attention is None


@pytest.mark.parametrize("mode", ["lr_only", "hr_only"])
def test_a_single_branch_model_gives_its_fused_logits_only(mode: str) -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode=mode).eval()
    images = torch.randn(1, 3, 40, 56, generator=torch.Generator().manual_seed(15))
    branches = predict_full_image_branches(model, images, WINDOWS)
    assert list(branches) == ["fused"]
    assert torch.equal(branches["fused"], predict_full_image(model, images, WINDOWS))


def test_branches_from_one_pass_equal_separate_mode_predictions() -> None:
    """Evaluation reads fused, context and detail from one pass; each must equal its own mode."""
    torch.manual_seed(0)
    network = build_network(
        NetworkConfig(
            encoder="mit-nano", num_classes=5, decoder_embed_dim=16, attention_embed_dim=16
        )
    ).eval()
    model = HRDAModel(network, scale=2, detail_hw=(32, 32))
    images = torch.randn(1, 3, 72, 136)
    with torch.no_grad():
        windows = SlidingWindows((64, 64), (32, 32))
        branches = predict_full_image_branches(model, images, windows)
        expected = {}
        for name, mode in (("fused", "hrda"), ("context", "lr_only"), ("detail", "hr_only")):
            model.mode = mode
            expected[name] = predict_full_image(model, images, windows)
    for name, logits in expected.items():
        torch.testing.assert_close(branches[name], logits, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize(("mode", "channels"), [("hrda", NUM_CLASSES), ("fixed_attention", 1)])
def test_branches_can_bring_the_attention_from_the_same_pass(mode: str, channels: int) -> None:
    """Diagnostics read the branches and the attention together, as the separate calls do."""
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode=mode, fixed_attention=0.25)
    images = torch.randn(1, 3, 45, 70, generator=torch.Generator().manual_seed(4))
    together = predict_full_image_branches(model, images, WINDOWS, attention=True)
    alone = predict_full_image_branches(model, images, WINDOWS)
    _, attention = predict_full_image_with_attention(model, images, WINDOWS)
    assert list(together) == ["fused", "context", "detail", "attention"]
    assert together["attention"].shape == (1, channels, 45, 70)
    torch.testing.assert_close(together["attention"], attention)
    for name, logits in alone.items():
        torch.testing.assert_close(together[name], logits, msg=name)
    single = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode="lr_only")
    assert list(predict_full_image_branches(single, images, WINDOWS, attention=True)) == ["fused"]


@pytest.mark.parametrize(
    ("mode", "attention"), [("hrda", True), ("hrda", False), ("lr_only", True)]
)
def test_streamed_labels_equal_the_argmax_of_the_full_logits(mode: str, attention: bool) -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode=mode).eval()
    images = torch.randn(2, 3, 150, 70, generator=torch.Generator().manual_seed(11))
    done: list[tuple[int, int]] = []
    labels, maps = predict_full_image_labels(
        model,
        images,
        WINDOWS._replace(batch_size=5),
        attention=attention,
        progress=lambda i, n: done.append((i, n)),
    )
    logits, full_maps = predict_full_image_with_attention(model, images, WINDOWS)
    assert torch.equal(labels, logits.argmax(dim=1))  # band by band
    if attention and mode == "hrda":
        torch.testing.assert_close(maps, full_maps.gather(1, labels[:, None])[:, 0])
    else:
        assert maps is None
    # padded to 152 x 72: 9 x 4 windows x 2 images = 72 crops in batches of 5, reported
    assert done[-1] == (72, 72) and len(done) == 15


def test_band_upsampling_equals_upsampling_the_whole_grid() -> None:
    grid = torch.randn(1, 4, 37, 11, generator=torch.Generator().manual_seed(12))
    whole = F.interpolate(grid, scale_factor=4, mode="bilinear", align_corners=False)
    for band_cells in (1, 5, 16, 64):
        bands = upsample_in_bands(grid, 4, (146, 41), lambda band: band, band_cells)
        # The same interpolation weights; only the kernel's vector path may round differently.
        torch.testing.assert_close(bands, whole[..., :146, :41], rtol=0, atol=1e-6)


def test_uniform_window_weights_are_the_plain_average_and_the_default() -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16)).eval()
    images = torch.randn(1, 3, 45, 70, generator=torch.Generator().manual_seed(13))
    default = predict_full_image(model, images, WINDOWS)
    uniform = predict_full_image(model, images, WINDOWS._replace(weights="uniform"))
    assert torch.equal(default, uniform)
    assert window_weight_map((4, 4), "uniform") is None
    with pytest.raises(ValueError, match="tapered"):
        window_weight_map((4, 4), "hann")


def test_tapered_weights_keep_a_translation_equivariant_net_exact() -> None:
    """Every window of CellNet sees the same cell values: any weighting reproduces them."""
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16), mode="hr_only")
    images = torch.randn(1, 3, 48, 80, generator=torch.Generator().manual_seed(14))
    tapered = predict_full_image(model, images, WINDOWS._replace(weights="tapered"))
    torch.testing.assert_close(tapered, whole_image_logits(model.network, images))
