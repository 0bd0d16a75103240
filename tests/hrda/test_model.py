"""HRDAModel: multi-resolution training pass, fusion, modes and window prediction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.model import HRDAModel, MultiResOutput
from hrda_kedro.hrda.networks.base import SegmentationNetwork

NUM_CLASSES = 3


class CellNet(SegmentationNetwork):
    """Average-pool by ``o`` + 1x1 convs: each output cell sees only its own ``o x o`` pixels.

    It is therefore translation-equivariant on the stride-``o`` grid. Records the batch size
    of every encoder call and every attention call.
    """

    def __init__(self, output_stride: int = 4, classwise: bool = True, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.num_classes = NUM_CLASSES
        self.output_stride = output_stride
        self.seg = nn.Conv2d(3, NUM_CLASSES, 1)
        self.att = nn.Conv2d(3, NUM_CLASSES if classwise else 1, 1)
        self.extract_calls: list[int] = []
        self.attend_calls: list[int] = []

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        self.extract_calls.append(images.shape[0])
        return [F.avg_pool2d(images, self.output_stride)]

    def segment(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.seg(features[0])

    def attend(self, features: list[torch.Tensor]) -> torch.Tensor:
        self.attend_calls.append(features[0].shape[0])
        return self.att(features[0])


class CornerNet(CellNet):
    """Logit 1 in the top-left output cell of every crop, 0 elsewhere: exposes window averaging."""

    def segment(self, features: list[torch.Tensor]) -> torch.Tensor:
        batch, _, height, width = features[0].shape
        corner = features[0].new_ones(batch, NUM_CLASSES, 1, 1)
        return F.pad(corner, (0, width - 1, 0, height - 1))


def up(tensor: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(tensor, scale_factor=factor, mode="bilinear", align_corners=False)


def make(mode: str = "hrda", detail_hw: tuple[int, int] = (16, 16), **kwargs) -> HRDAModel:
    network = CellNet(classwise=kwargs.pop("classwise", True))
    return HRDAModel(network, scale=2, detail_hw=detail_hw, mode=mode, **kwargs)


# o = 4, s = 2: HR context crop 32 x 48, LR 16 x 24, HR grid 8 x 12, detail 16 x 16 (grid 4 x 4)
BOXES = [Box(8, 24, 16, 16), Box(16, 0, 16, 16)]


@pytest.fixture
def context_hr() -> torch.Tensor:
    return torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(5))


def box_mask(boxes: list[Box], stride: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(len(boxes), 1, *grid_hw, dtype=torch.bool)
    for i, box in enumerate(boxes):
        mask[
            i, :, box.top // stride : box.bottom // stride, box.left // stride : box.right // stride
        ] = True
    return mask


@pytest.mark.parametrize("classwise", [True, False])
def test_fused_equals_upsampled_context_outside_the_box_bit_for_bit(
    context_hr: torch.Tensor, classwise: bool
) -> None:
    model = make(classwise=classwise)
    out = model.forward_train(context_hr, BOXES)
    context_up = up(out.context, 2)
    outside = ~box_mask(BOXES, 4, (8, 12)).expand_as(out.fused)
    assert out.fused.shape == (2, NUM_CLASSES, 8, 12)
    assert torch.equal(out.fused[outside], context_up[outside])
    assert not torch.equal(out.fused, context_up)  # the detail branch changed the box region


def official_masked_fusion(
    context: torch.Tensor, attention: torch.Tensor, detail: torch.Tensor, box: Box, o: int
) -> torch.Tensor:
    """Official HRDAHead for one sample: mask a on the LR grid, multiply, then upsample."""
    lr_mask = torch.zeros_like(attention[:, :1])
    lr = box.scaled_down(2 * o)
    lr_mask[..., lr.top : lr.bottom, lr.left : lr.right] = 1
    masked = attention * lr_mask
    padded = torch.zeros_like(up(context, 2))
    hr = box.scaled_down(o)
    padded[..., hr.top : hr.bottom, hr.left : hr.right] = detail
    return up((1 - masked) * context, 2) + up(masked, 2) * padded


def test_fused_inside_the_box_is_the_official_fusion(context_hr: torch.Tensor) -> None:
    model = make()
    net = model.network
    out = model.forward_train(context_hr, BOXES)
    # recompute sample by sample
    low = F.avg_pool2d(context_hr, 2)  # bilinear downscale by 2 == 2x2 average
    features = net.extract(low)
    context = net.segment(features)
    attention = torch.sigmoid(net.attend(features))
    torch.testing.assert_close(out.context, context)
    torch.testing.assert_close(out.attention, attention)
    for i, box in enumerate(BOXES):
        detail = net(box.crop(context_hr[i : i + 1]))
        torch.testing.assert_close(out.detail[i : i + 1], detail)
        expected = official_masked_fusion(
            context[i : i + 1], attention[i : i + 1], detail, box, o=4
        )
        grid = box.scaled_down(4)
        torch.testing.assert_close(grid.crop(out.fused[i : i + 1]), grid.crop(expected))


class ChannelNet(SegmentationNetwork):
    """Output stride 1, one class: the class logit is input channel 0, the attention logit
    channel 1, so a test sets the LR context, attention and HR detail by hand."""

    num_classes = 1
    output_stride = 1

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images]

    def segment(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[0][:, :1]

    def attend(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[0][:, 1:2]


LOG3 = torch.log(torch.tensor(3.0)).item()  # sigmoid(+-log 3) = 0.75 / 0.25


def hand_image(class_rows: list[list[float]], attention_logits: list[float]) -> torch.Tensor:
    """HR image (1, 3, 2, W): channel 0 the class logits, channel 1 the attention logit of
    each 2x2 block (so the LR attention is exactly that logit)."""
    width = len(class_rows[0])
    image = torch.zeros(1, 3, 2, width)
    image[0, 0] = torch.tensor(class_rows)
    image[0, 1] = torch.tensor(attention_logits).repeat_interleave(2).expand(2, width)
    return image


def test_unmasked_fusion_multiplies_at_lr_then_upsamples_by_hand() -> None:
    # HR 2 x 4, LR 1 x 2. LR context y_c = block means = [2, 4]; a = [0.25, 0.75];
    # HR detail y_d = the HR class channel (one window covers the image).
    # 1-D bilinear x2 (align_corners=False) of [u, v] is [u, .75u + .25v, .25u + .75v, v].
    # (1 - a) y_c = [1.5, 1.0] -> up: [1.5, 1.375, 1.125, 1.0]; up(a) = [.25, .375, .625, .75]
    image = hand_image([[0, 4, 2, 6], [4, 0, 6, 2]], [-LOG3, LOG3])
    out = HRDAModel(ChannelNet(), scale=2, detail_hw=(2, 4)).predict_window(image)
    torch.testing.assert_close(out.context, torch.tensor([[[[2.0, 4.0]]]]))
    torch.testing.assert_close(out.attention, torch.tensor([[[[0.25, 0.75]]]]))
    expected = torch.tensor(
        [[1.5, 1.375 + 0.375 * 4, 1.125 + 0.625 * 2, 1.0 + 0.75 * 6],
         [1.5 + 0.25 * 4, 1.375, 1.125 + 0.625 * 6, 1.0 + 0.75 * 2]]
    )  # fmt: skip
    torch.testing.assert_close(out.fused[0, 0], expected)
    # Weighting after upsampling, (1 - up(a)) up(y_c) + up(a) y_d, gives 3.0625 at [0, 1].
    assert abs(out.fused[0, 0, 0, 1].item() - 3.0625) > 0.1


def test_masked_fusion_by_hand_in_the_box_and_exact_context_outside() -> None:
    # HR 2 x 8, LR 1 x 4: y_c = [2, 4, 6, 8], a = [0.5, 0.25, 0.75, 0.5]; detail box =
    # HR columns 2..5 = LR cells 1..2, so the masked a' = [0, .25, .75, 0] and
    # (1 - a') y_c = [2, 3, 1.5, 8]. Upsampled at HR columns 2, 3, 4, 5:
    # (1 - a') y_c -> [2.75, 2.625, 1.875, 3.125]; a' -> [.1875, .375, .625, .5625].
    # Outside the box: up(y_c) = [2, 2.5, ., ., ., ., 7.5, 8].
    image = hand_image([[1, 3, 2, 6, 5, 7, 8, 8], [3, 1, 6, 2, 7, 5, 8, 8]], [0, -LOG3, LOG3, 0])
    model = HRDAModel(ChannelNet(), scale=2, detail_hw=(2, 4))
    out = model.forward_train(image, [Box(0, 2, 2, 4)])
    torch.testing.assert_close(out.detail[0, 0], image[0, 0, :, 2:6])
    detail = torch.tensor([[2.0, 6.0, 5.0, 7.0], [6.0, 2.0, 7.0, 5.0]])
    weighted_context = torch.tensor([2.75, 2.625, 1.875, 3.125])
    inside = weighted_context + torch.tensor([0.1875, 0.375, 0.625, 0.5625]) * detail
    expected = torch.cat(
        [torch.tensor([[2.0, 2.5]] * 2), inside, torch.tensor([[7.5, 8.0]] * 2)], dim=1
    )
    torch.testing.assert_close(out.fused[0, 0], expected)
    assert torch.equal(out.fused[..., [0, 1, 6, 7]], up(out.context, 2)[..., [0, 1, 6, 7]])


def test_per_sample_boxes_crop_each_image_at_its_own_place(context_hr: torch.Tensor) -> None:
    model = make(mode="hr_only")
    net = model.network
    full = net(context_hr)  # equivariant: the detail logits are crops of the full-crop logits
    out = model.forward_train(context_hr, BOXES)
    for i, box in enumerate(BOXES):
        torch.testing.assert_close(out.detail[i], box.scaled_down(4).crop(full[i]))
    swapped = model.forward_train(context_hr, BOXES[::-1])
    assert not torch.allclose(swapped.detail, out.detail)


def test_each_branch_is_one_batched_call_of_the_shared_network(context_hr: torch.Tensor) -> None:
    model = make()
    model.forward_train(context_hr, BOXES)
    assert model.network.extract_calls == [2, 2]
    assert model.network.attend_calls == [2]


class SampleWiseCellNet(CellNet):
    batch_independent_encoder = True


# HR context 32 x 32 -> LR 16 x 16, the detail size: the recipe's equal sizes
SQUARE_BOXES = [Box(8, 16, 16, 16), Box(16, 0, 16, 16)]


def test_equal_size_branches_share_one_encoder_call_with_the_same_output() -> None:
    context = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    shared = HRDAModel(SampleWiseCellNet(), scale=2, detail_hw=(16, 16))
    separate = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16))  # same seed, same weights
    out, reference = shared(context, SQUARE_BOXES), separate(context, SQUARE_BOXES)
    assert shared.network.extract_calls == [4]
    assert separate.network.extract_calls == [2, 2]  # BatchNorm-like encoders keep two calls
    for name in ("fused", "context", "detail", "attention"):
        torch.testing.assert_close(getattr(out, name), getattr(reference, name))


def test_in_eval_mode_any_encoder_shares_the_call() -> None:
    model = HRDAModel(CellNet(), scale=2, detail_hw=(16, 16)).eval()
    model.forward_train(torch.randn(2, 3, 32, 32), SQUARE_BOXES)
    assert model.network.extract_calls == [4]


def test_a_shared_mit_encoder_call_matches_two_calls_in_training() -> None:
    from hrda_kedro.hrda.networks import NetworkConfig, build_network

    def daformer(batch_independent: bool) -> HRDAModel:
        torch.manual_seed(0)
        network = build_network(
            NetworkConfig(
                encoder="mit-nano", decoder_embed_dim=16, attention_embed_dim=16, dropout=0.0
            )
        )
        for module in network.modules():  # random draws depend on the call order: none
            if hasattr(module, "drop_prob"):
                module.drop_prob = 0.0
        network.batch_independent_encoder = batch_independent
        return HRDAModel(network, scale=2, detail_hw=(64, 64)).train()

    context = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(7))
    boxes = [Box(0, 64, 64, 64), Box(32, 16, 64, 64)]
    shared, separate = daformer(True), daformer(False)
    out, reference = shared(context, boxes), separate(context, boxes)
    for name in ("fused", "context", "detail", "attention"):
        torch.testing.assert_close(getattr(out, name), getattr(reference, name))
    # The heads still see each branch alone: BatchNorm statistics are per branch.
    torch.testing.assert_close(
        shared.network.decode_head.state_dict(), separate.network.decode_head.state_dict()
    )


def test_only_the_mit_encoder_is_declared_batch_independent() -> None:
    from hrda_kedro.hrda.networks.daformer import DAFormerNetwork
    from hrda_kedro.hrda.networks.deeplabv2 import DeepLabV2Network

    assert DAFormerNetwork.batch_independent_encoder
    assert not DeepLabV2Network.batch_independent_encoder  # ResNet's BatchNorm mixes samples


def test_gradients_reach_the_network_through_both_branches(context_hr: torch.Tensor) -> None:
    model = make()
    out = model(context_hr, BOXES)  # nn.Module call is the training pass
    out.fused.sum().backward()
    assert model.network.seg.weight.grad is not None
    assert model.network.att.weight.grad.abs().sum() > 0


def test_lr_only_runs_the_context_branch_alone(context_hr: torch.Tensor) -> None:
    model = make(mode="lr_only")
    out = model.forward_train(context_hr, BOXES)
    assert out.detail is None and out.attention is None
    assert torch.equal(out.fused, up(out.context, 2))
    assert out.context_features is not None
    assert model.network.extract_calls == [2] and model.network.attend_calls == []


def test_hr_only_returns_the_detail_prediction(context_hr: torch.Tensor) -> None:
    model = make(mode="hr_only")
    out = model.forward_train(context_hr, BOXES)
    assert out.context is None and out.attention is None and out.context_features is None
    assert out.fused is out.detail and out.fused.shape == (2, NUM_CLASSES, 4, 4)
    assert model.network.extract_calls == [2]


def test_fixed_attention_uses_the_constant(context_hr: torch.Tensor) -> None:
    model = make(mode="fixed_attention", fixed_attention=0.25)
    out = model.forward_train(context_hr, BOXES)
    assert torch.equal(out.attention, torch.full((2, 1, 4, 6), 0.25))
    assert model.network.attend_calls == []
    for i, box in enumerate(BOXES):
        grid = box.scaled_down(4)
        expected = official_masked_fusion(
            out.context[i : i + 1], out.attention[i : i + 1], out.detail[i : i + 1], box, o=4
        )
        torch.testing.assert_close(grid.crop(out.fused[i : i + 1]), grid.crop(expected))
        # the constant is masked on the LR grid: the box's inner cells see exactly 0.25
        inner = grid.crop(out.fused[i])[..., 1:-1, 1:-1]
        hand = 0.75 * grid.crop(up(out.context, 2)[i]) + 0.25 * out.detail[i]
        torch.testing.assert_close(inner, hand[..., 1:-1, 1:-1])


def test_output_stride_and_scale_are_exposed() -> None:
    model = make()
    assert (model.output_stride, model.scale) == (4, 2)


def test_mode_can_be_switched_but_only_to_a_known_mode(context_hr: torch.Tensor) -> None:
    model = make()
    model.mode = "lr_only"
    assert model.forward_train(context_hr, BOXES).detail is None
    with pytest.raises(ValueError, match="mode must be one of"):
        model.mode = "hrdaa"


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([Box(0, 0, 16, 16)], "one detail box per sample"),
        ([Box(0, 0, 16, 16), Box(0, 0, 8, 16)], "does not have detail_hw"),
        ([Box(0, 0, 16, 16), Box(24, 0, 16, 16)], "outside"),
        ([Box(0, 0, 16, 16), Box(2, 0, 16, 16)], "aligned"),
    ],
)
def test_forward_train_rejects_bad_boxes(
    context_hr: torch.Tensor, boxes: list[Box], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make().forward_train(context_hr, boxes)


def test_forward_train_rejects_a_crop_not_aligned_to_s_times_o() -> None:
    with pytest.raises(ValueError, match="multiple of scale \\* output_stride = 8"):
        make().forward_train(torch.zeros(1, 3, 36, 48), [Box(0, 0, 16, 16)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "both"}, "mode must be one of"),
        ({"detail_hw": (16, 18)}, "detail_hw"),
    ],
)
def test_constructor_validates(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_predict_window_fuses_stitched_hr_with_unmasked_attention() -> None:
    model = make()
    net = model.network
    window = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    out = model.predict_window(window)
    assert isinstance(out, MultiResOutput)
    # HR windows of 16x16, stride 8: 3 x 5 = 15 crops per image, one batch of 30
    assert net.extract_calls == [30, 2]
    torch.testing.assert_close(out.detail, net(window))  # equivariant net: stitching is exact
    a = out.attention
    torch.testing.assert_close(out.fused, up((1 - a) * out.context, 2) + up(a, 2) * out.detail)
    assert (a > 0).all()  # no mask: the attention acts everywhere


def test_predict_window_averages_overlapping_hr_windows() -> None:
    model = HRDAModel(CornerNet(), scale=2, detail_hw=(8, 8), mode="hr_only")
    # window 16 x 16 -> grid 4 x 4; HR windows 2 x 2 cells at cell offsets 0, 1, 2 per axis.
    # Covering counts per axis (1, 2, 2, 1); a window's top-left cell per axis: 0, 1, 2.
    out = model.predict_window(torch.zeros(1, 3, 16, 16))
    along = torch.tensor([1.0, 0.5, 0.5, 0.0])
    expected = (along[:, None] * along[None, :]).expand(1, NUM_CLASSES, 4, 4)
    torch.testing.assert_close(out.fused, expected)


def test_without_overlap_hr_windows_tile_the_window_edge_to_edge() -> None:
    """The official ``nooverlap`` ablation: stride = detail size, every cell seen once."""
    model = HRDAModel(
        CornerNet(), scale=2, detail_hw=(8, 8), mode="hr_only", hr_slide_overlapping=False
    )
    # window 16 x 16 -> grid 4 x 4; HR windows 2 x 2 cells at cell offsets 0 and 2 per axis.
    out = model.predict_window(torch.zeros(1, 3, 16, 16))
    along = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = (along[:, None] * along[None, :]).expand(1, NUM_CLASSES, 4, 4)
    torch.testing.assert_close(out.fused, expected)


def test_without_overlap_the_teacher_runs_4_instead_of_9_crops_per_window() -> None:
    window = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    tiled_model = make(hr_slide_overlapping=False).eval()
    tiled = tiled_model.predict_window(window)
    assert tiled_model.network.extract_calls == [2 + 2 * 4]  # 2 LR windows + 2 x 4 crops
    torch.testing.assert_close(tiled.detail, tiled_model.network(window))  # equivariant net
    # a window that is no multiple of the detail size: the last tile snaps to the border
    odd_model = make(hr_slide_overlapping=False, mode="hr_only")
    odd_model.predict_window(torch.randn(1, 3, 32, 40))
    assert odd_model.network.extract_calls == [2 * 3]


def test_predict_window_chunks_hr_windows_with_the_same_result() -> None:
    window = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(4))
    whole = make().predict_window(window)
    chunked_model = make(hr_window_batch=7)
    chunked = chunked_model.predict_window(window)
    assert chunked_model.network.extract_calls == [7, 7, 7, 7, 2, 2]
    torch.testing.assert_close(chunked.fused, whole.fused)


def test_predict_window_shares_one_encoder_call_when_lr_and_hr_crops_have_the_same_size() -> None:
    # LR window 16 x 16 = detail size: 2 LR windows + 2 x 9 HR crops in one encoder call.
    window = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    shared_model = make().eval()  # in training, CellNet (BatchNorm-like) keeps two calls
    shared = shared_model.predict_window(window)
    separate_model = make(hr_window_batch=18).eval()  # chunks bound memory: branches apart
    separate = separate_model.predict_window(window)
    assert shared_model.network.extract_calls == [20]
    assert separate_model.network.extract_calls == [18, 2]
    for name in ("fused", "context", "detail", "attention"):
        torch.testing.assert_close(getattr(shared, name), getattr(separate, name))
    torch.testing.assert_close(shared.context_features, separate.context_features)


def _overlapping_windows() -> torch.Tensor:
    """Three 32 x 32 windows of one 32 x 64 image at columns 0, 16 and 32."""
    image = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(12))
    return torch.cat([image[..., left : left + 32] for left in (0, 16, 32)])


def test_overlapping_windows_predict_each_distinct_detail_crop_once() -> None:
    # 9 detail crops per window (16 x 16, stride 8) at columns 0-16, 16-32, 32-48: 7 of the
    # 9 columns are distinct, so 21 crops and 3 LR windows go through the encoder, not 30.
    windows = _overlapping_windows()
    reused_model, plain_model = make().eval(), make().eval()  # same seed, same weights
    reused = reused_model.predict_window(windows, reuse_identical_crops=True)
    plain = plain_model.predict_window(windows)
    assert reused_model.network.extract_calls == [24]
    assert plain_model.network.extract_calls == [30]
    for name in ("fused", "context", "detail", "attention"):
        assert torch.equal(getattr(reused, name), getattr(plain, name)), name


def test_training_mode_never_reuses_crops() -> None:
    """Heads with BatchNorm mix a training batch: its samples are never dropped."""
    model = HRDAModel(SampleWiseCellNet(), scale=2, detail_hw=(16, 16)).train()
    model.predict_window(_overlapping_windows(), reuse_identical_crops=True)
    assert model.network.extract_calls == [30]


def test_the_teachers_shared_encoder_call_gives_the_same_pseudo_labels() -> None:
    from hrda_kedro.hrda.networks import NetworkConfig, build_network

    def teacher(hr_window_batch: int | None) -> HRDAModel:
        torch.manual_seed(0)
        network = build_network(
            NetworkConfig(encoder="mit-nano", decoder_embed_dim=16, attention_embed_dim=16)
        )
        model = HRDAModel(network, scale=2, detail_hw=(64, 64), hr_window_batch=hr_window_batch)
        return model.eval()

    window = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        shared, separate = teacher(None).predict_window(window), teacher(18).predict_window(window)
    torch.testing.assert_close(shared.fused, separate.fused, rtol=1e-4, atol=1e-5)
    assert torch.equal(shared.fused.argmax(1), separate.fused.argmax(1))


def test_predict_window_modes() -> None:
    window = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    lr = make(mode="lr_only").predict_window(window)
    assert lr.detail is None and torch.equal(lr.fused, up(lr.context, 2))
    hr_model = make(mode="hr_only")
    hr = hr_model.predict_window(window)
    assert hr.context is None and hr.fused is hr.detail
    torch.testing.assert_close(hr.fused, hr_model.network(window))
    fixed = make(mode="fixed_attention", fixed_attention=1.0).predict_window(window)
    torch.testing.assert_close(fixed.fused, fixed.detail)


def test_predict_window_smaller_than_the_detail_size_is_one_hr_crop() -> None:
    model = make(detail_hw=(32, 32))
    window = torch.randn(1, 3, 16, 24)
    out = model.predict_window(window)
    assert model.network.extract_calls[0] == 1
    torch.testing.assert_close(out.detail, model.network(window))
