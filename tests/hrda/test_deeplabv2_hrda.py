"""DeepLabV2 HRDA (output stride 8), checked like the MiT model: crops aligned to s*o = 16,
the official stem and heads, the fusion on aligned LR and HR grids, window prediction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.inference import predict_full_image
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.model_config import ModelConfig, SlidingWindows
from hrda_kedro.params import ParameterError, parse
from hrda_kedro.runtime.models import build_model

MODEL = {
    "network": {"architecture": "deeplabv2", "encoder": "resnet101-v1c"},
    "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
}
# HR context 64 x 64 -> LR 32 x 32 -> LR logits 4 x 4 (one cell = 16 HR px); HR grid 8 x 8.
BOXES = [Box(16, 32, 32, 32), Box(32, 0, 32, 32)]


def up(tensor: torch.Tensor) -> torch.Tensor:
    return F.interpolate(tensor, scale_factor=2, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def model() -> HRDAModel:
    torch.manual_seed(0)
    return build_model(parse(ModelConfig, MODEL, "model")).eval()


def test_crops_are_aligned_to_s_times_o_16() -> None:
    """The crop stream aligns its boxes to ``s * o`` (tests/hrda/uda/test_batches.py)."""
    with pytest.raises(ParameterError, match=r"detail_crop: expected multiples of .* = 16"):
        parse(ModelConfig, {**MODEL, "hrda": {"context_crop": [64, 64], "detail_crop": [24, 24]}}, "model")  # fmt: skip


def test_official_stem_and_heads(model: HRDAModel) -> None:
    network = model.network
    assert (network.output_stride, model.scale * network.output_stride) == (8, 16)
    convs = [m for m in network.encoder.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (3, 32, (2, 2)),
        (32, 32, (1, 1)),
        (32, 64, (1, 1)),
    ]
    for head, channels in ((network.decode_head, 19), (network.attention_head, 19)):
        assert [(c.in_channels, c.out_channels, c.dilation) for c in head.convs] == [
            (2048, channels, (6, 6)),
            (2048, channels, (12, 12)),
        ]


def test_a_box_aligned_to_o_but_not_to_s_times_o_is_rejected(model: HRDAModel) -> None:
    with pytest.raises(ValueError, match="aligned to scale \\* output_stride = 16"):
        model.forward_train(torch.zeros(2, 3, 64, 64), [Box(8, 0, 32, 32), Box(0, 0, 32, 32)])


@pytest.mark.usefixtures("one_thread")
def test_training_pass_fuses_on_aligned_grids(model: HRDAModel) -> None:
    context_hr = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.forward_train(context_hr, BOXES)
        assert out.context.shape == out.attention.shape == (2, 19, 4, 4)
        assert out.detail.shape == (2, 19, 4, 4) and out.fused.shape == (2, 19, 8, 8)
        low = F.interpolate(context_hr, scale_factor=0.5, mode="bilinear", align_corners=False)
        # ResNet-101 on another batch size sums in another order on some CPUs (up to 1.8e-4
        # measured on an AMD EPYC); a crop one HR cell off differs by up to 33 here
        close = {"rtol": 1e-3, "atol": 1e-3}
        torch.testing.assert_close(out.context, model.network(low), **close)
        for i, box in enumerate(BOXES):
            detail = model.network(box.crop(context_hr[i : i + 1]))
            torch.testing.assert_close(out.detail[i : i + 1], detail, **close)
    for i, box in enumerate(BOXES):
        # the box covers whole LR cells (16 px) and whole HR cells (8 px): the official
        # masked fusion, by hand, on the two grids
        lr, hr = box.scaled_down(16), box.scaled_down(8)
        mask = torch.zeros(1, 1, 4, 4)
        mask[..., lr.top : lr.bottom, lr.left : lr.right] = 1
        a = out.attention[i : i + 1] * mask
        padded = torch.zeros(1, 19, 8, 8)
        padded[..., hr.top : hr.bottom, hr.left : hr.right] = out.detail[i]
        expected = up((1 - a) * out.context[i : i + 1]) + up(a) * padded
        torch.testing.assert_close(hr.crop(out.fused[i]), hr.crop(expected[0]))
        outside = torch.ones(8, 8, dtype=torch.bool)
        outside[hr.top : hr.bottom, hr.left : hr.right] = False
        assert torch.equal(out.fused[i][:, outside], up(out.context)[i][:, outside])


@pytest.mark.usefixtures("one_thread")
def test_window_and_full_image_prediction(model: HRDAModel) -> None:
    window = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.predict_window(window)
        # detail windows 32 x 32 at stride 16: 3 x 3 crops stitched on the stride-8 grid
        assert out.detail.shape == out.fused.shape == (1, 19, 8, 8)
        a = out.attention
        expected = up((1 - a) * out.context) + up(a) * out.detail
        torch.testing.assert_close(out.fused, expected)
        # an image that is no multiple of 16 (nor a window) is padded to one, then cropped
        windows = SlidingWindows((64, 64), (32, 32))
        logits = predict_full_image(model, torch.randn(1, 3, 48, 56), windows)
    assert logits.shape == (1, 19, 48, 56)
    assert torch.isfinite(logits).all()
