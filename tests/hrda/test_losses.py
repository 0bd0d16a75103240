"""Pixel-weighted cross-entropy and the HRDA loss, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hrda_kedro.hrda.crops import Box
from hrda_kedro.hrda.losses import hrda_loss, pixel_cross_entropy
from hrda_kedro.hrda.model import MultiResOutput

LOG2 = math.log(2.0)


def three_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    # pixel 0: logits (0, 0), label 0 -> CE log 2; pixel 1: (log 3, 0), label 1 -> CE log 4;
    # pixel 2: ignored
    logits = torch.tensor([[0.0, math.log(3.0), 5.0], [0.0, 0.0, -5.0]]).reshape(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    return logits.requires_grad_(), labels


def test_cross_entropy_is_the_mean_over_non_ignored_pixels() -> None:
    logits, labels = three_pixels()
    loss = pixel_cross_entropy(logits, labels)
    torch.testing.assert_close(loss, torch.tensor((LOG2 + 2 * LOG2) / 2))


def test_pixel_weights_multiply_before_the_mean() -> None:
    logits, labels = three_pixels()
    weights = torch.tensor([[[2.0, 0.5, 7.0]]])  # the ignored pixel's weight does not count
    loss = pixel_cross_entropy(logits, labels, weights)
    torch.testing.assert_close(loss, torch.tensor((2 * LOG2 + 0.5 * 2 * LOG2) / 2))


def test_per_image_weights_broadcast() -> None:
    logits = torch.zeros(2, 2, 1, 2)  # every pixel CE = log 2
    labels = torch.tensor([[[0, 1]], [[1, 255]]])
    loss = pixel_cross_entropy(logits, labels, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(loss, torch.tensor((LOG2 + LOG2 + 4 * LOG2) / 3))


def test_logits_are_resized_bilinearly_to_the_label_size() -> None:
    logits = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[[0, 1, 2, 1], [2, 2, 0, 255], [1, 0, 0, 2], [255, 1, 2, 0]]])
    resized = F.interpolate(logits, size=(4, 4), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(resized, labels, ignore_index=255)  # mean over valid pixels
    torch.testing.assert_close(pixel_cross_entropy(logits, labels), expected)


def test_all_ignored_gives_zero_attached_to_the_graph() -> None:
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    loss = pixel_cross_entropy(logits, labels, torch.ones(2, 4, 4))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize(
    ("labels_shape", "weights_shape", "message"),
    [
        ((2, 4, 4), (3,), "weights must be"),
        ((2, 4), None, "labels \\(B, H, W\\)"),
        ((1, 4, 4), None, "same B"),
    ],
)
def test_cross_entropy_validates_shapes(
    labels_shape: tuple, weights_shape: tuple | None, message: str
) -> None:
    weights = None if weights_shape is None else torch.ones(weights_shape)
    with pytest.raises(ValueError, match=message):
        pixel_cross_entropy(
            torch.zeros(2, 3, 4, 4), torch.zeros(labels_shape, dtype=torch.long), weights
        )


# HR context crop labels 8 x 8, detail boxes 4 x 4; stride o = 2 logits (4 x 4 fused, 2 x 2 detail)
BOXES = [Box(4, 0, 4, 4), Box(0, 4, 4, 4)]


def labels_with_class_one_in_the_boxes() -> torch.Tensor:
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    for i, box in enumerate(BOXES):
        box.crop(labels[i]).fill_(1)
    labels[0, 0, 0] = 255
    return labels


def output(with_context: bool = True, with_detail: bool = True) -> MultiResOutput:
    fused = torch.zeros(2, 2, 4, 4, requires_grad=True)  # CE log 2 everywhere
    detail = torch.tensor([-20.0, 20.0]).view(1, 2, 1, 1).expand(2, 2, 2, 2).clone()
    return MultiResOutput(
        fused=fused if with_context else detail,
        context=torch.zeros(2, 2, 2, 2) if with_context else None,
        detail=detail.requires_grad_() if with_detail else None,
        attention=None,
        context_features=None,
    )


def test_hrda_loss_weights_fused_and_detail_terms() -> None:
    loss, terms = hrda_loss(output(), labels_with_class_one_in_the_boxes(), BOXES, None, 0.1)
    torch.testing.assert_close(terms["fused"], torch.tensor(LOG2))
    # detail logits predict class 1, which is exactly the label inside each sample's box
    assert terms["detail"] < 1e-6
    torch.testing.assert_close(loss, 0.9 * terms["fused"] + 0.1 * terms["detail"])
    assert loss.requires_grad and not any(t.requires_grad for t in terms.values())


def test_hrda_loss_crops_the_labels_per_sample() -> None:
    _, terms = hrda_loss(output(), labels_with_class_one_in_the_boxes(), BOXES[::-1], None)
    assert terms["detail"] > 10  # the wrong boxes hold class 0


def test_hrda_loss_crops_pixel_weights_and_passes_image_weights() -> None:
    labels = labels_with_class_one_in_the_boxes()
    weights = torch.ones(2, 8, 8)
    for i, box in enumerate(BOXES):
        box.crop(weights[i]).fill_(3.0)
    _, terms = hrda_loss(output(), labels, [Box(0, 0, 4, 4), Box(4, 4, 4, 4)], weights)
    # class-0 boxes: detail CE = 40 + log(1 + e^-40) ~ 40 per pixel, weight 1 there
    torch.testing.assert_close(terms["detail"], torch.tensor(40.0))
    _, terms = hrda_loss(
        output(), labels, [Box(0, 0, 4, 4), Box(4, 4, 4, 4)], torch.tensor([0.5, 0.5])
    )
    torch.testing.assert_close(terms["detail"], torch.tensor(20.0))
    torch.testing.assert_close(terms["fused"], torch.tensor(0.5 * LOG2))


def test_hrda_loss_lr_only_and_hr_only_use_one_term_at_full_weight() -> None:
    labels = labels_with_class_one_in_the_boxes()
    loss, terms = hrda_loss(output(with_detail=False), labels, BOXES, None, 0.1)
    assert set(terms) == {"fused"}
    torch.testing.assert_close(loss, torch.tensor(LOG2))
    loss, terms = hrda_loss(output(with_context=False), labels, [Box(0, 0, 4, 4)] * 2, None, 0.1)
    assert set(terms) == {"detail"}
    torch.testing.assert_close(loss, torch.tensor(40.0))


def _plain_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """The composition the memory-lean loss replaces: upsample, CE, weight, mean."""
    resized = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(resized, labels, reduction="none", ignore_index=255)
    if weights is not None:
        loss = loss * (weights[:, None, None] if weights.dim() == 1 else weights)
    return loss.sum() / (labels != 255).sum().clamp_min(1)


@pytest.mark.parametrize("weights_kind", ["none", "pixel", "image"])
@pytest.mark.parametrize(("batch", "logits_hw"), [(2, (16, 32)), (3, (64, 128))])
def test_loss_and_gradient_equal_the_plain_upsample_and_cross_entropy_bit_for_bit(
    weights_kind: str, batch: int, logits_hw: tuple[int, int]
) -> None:
    """Recomputing the log-probabilities in backward, one image at a time, runs the same
    operators in the same order: the same loss and gradient to the last bit, so no recorded
    result moves (also when the logits are already at the label size: no resize)."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(batch, 19, *logits_hw, generator=generator) * 3
    labels = torch.randint(0, 19, (batch, 64, 128), generator=generator)
    labels[0, :5] = 255
    weights = {
        "none": None,
        "pixel": torch.rand(batch, 64, 128, generator=generator),
        "image": torch.rand(batch, generator=generator),
    }[weights_kind]
    ours_in = logits.clone().requires_grad_()
    plain_in = logits.clone().requires_grad_()
    ours = pixel_cross_entropy(ours_in, labels, weights)
    plain = _plain_cross_entropy(plain_in, labels, weights)
    (3.0 * ours).backward()
    (3.0 * plain).backward()
    assert torch.equal(ours, plain)
    assert torch.equal(ours_in.grad, plain_in.grad)


def test_the_full_resolution_logits_are_not_kept_for_backward() -> None:
    """The graph holds the low-resolution logits and per-pixel scalars, nothing of size
    ``C x H x W``: the memory the loss saves on every step."""
    logits = torch.randn(2, 19, 8, 8, requires_grad=True)
    labels = torch.randint(0, 19, (2, 64, 64))
    saved: list[torch.Tensor] = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        pixel_cross_entropy(logits, labels, torch.rand(2, 64, 64))
    assert max(t.numel() for t in saved) == 2 * 64 * 64  # labels and scales; logits 2x19x8x8
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        _plain_cross_entropy(logits, labels, torch.rand(2, 64, 64))
    assert max(t.numel() for t in saved) == 2 * 19 * 64 * 64  # what the plain one keeps


@pytest.mark.parametrize("autocast", [True, False])
@pytest.mark.parametrize("weights_kind", ["none", "pixel", "image"])
@pytest.mark.parametrize("logits_hw", [(8, 16), (32, 64)])
def test_bf16_logits_are_lost_in_float32_as_mmseg_force_fp32(
    autocast: bool, weights_kind: str, logits_hw: tuple[int, int]
) -> None:
    """bf16 logits (a ``runtime.precision: bf16`` step computes its losses after the
    autocast forward) get the loss of their float32 copy, as the official decode head's
    ``force_fp32`` losses, and the gradient comes back in bf16. Before, a bf16 softmax
    met the float32 pseudo-label weights in backward and every self-training step raised
    a dtype error."""
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 19, *logits_hw, generator=generator).bfloat16()
    labels = torch.randint(0, 19, (2, 32, 64), generator=generator)
    labels[0, :3] = 255
    weights = {
        "none": None,
        "pixel": torch.rand(2, 32, 64, generator=generator),
        "image": torch.rand(2, generator=generator),
    }[weights_kind]
    ours_in = logits.clone().requires_grad_()
    plain_in = logits.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        ours = pixel_cross_entropy(ours_in, labels, weights)
    plain = _plain_cross_entropy(plain_in.float(), labels, weights)
    ours.backward()
    plain.backward()
    assert ours.dtype == torch.float32 and ours_in.grad.dtype == torch.bfloat16
    assert torch.equal(ours, plain)
    assert torch.equal(ours_in.grad, plain_in.grad)
