"""ImageNet feature distance (DAFormer): keep the student's "thing" features near ImageNet's.

Synthetic-source training makes the encoder forget the ImageNet features that recognise
objects; pulling the student's bottleneck features towards those of the frozen
ImageNet-pretrained encoder on thing-class pixels preserves them. It only helps when the
encoder starts from ImageNet weights.

Label downsampling (decision, as DAFormer's default): a feature cell counts as a thing
cell when a single thing class covers at least ``min_ratio`` (0.75) of the label pixels
in the cell (ignored pixels count in the denominator). With ``min_ratio > 0.5`` that class
is the cell's unique majority class, so this is "majority vote, kept only when pure
enough": mixed cells at object boundaries do not pull features either way.
An empty mask yields exactly 0 that is still part of the graph (zero gradients), never NaN
(the official code averages an empty selection and gets NaN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F

from hrda_kedro.hrda.model import MultiResOutput
from hrda_kedro.hrda.networks.base import SegmentationNetwork

# Cityscapes trainIds: traffic light, traffic sign, person, rider, car, truck, bus, train,
# motorcycle, bicycle.
THING_CLASSES = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)


def thing_mask(
    labels: torch.Tensor,
    feature_hw: tuple[int, int],
    thing_classes: Sequence[int] = THING_CLASSES,
    min_ratio: float = 0.75,
) -> torch.Tensor:
    """Boolean ``(B, h, w)``: feature cells where one thing class covers ``>= min_ratio``.

    ``labels`` ``(B, H, W)`` are pooled to ``feature_hw`` with adaptive average pooling, so
    ``H, W`` need not be multiples of ``h, w``.
    """
    if not 0.5 < min_ratio <= 1.0:
        raise ValueError(
            f"min_ratio must lie in (0.5, 1] so the class is a majority, got {min_ratio}"
        )
    if labels.ndim != 3:
        raise ValueError(f"labels must be (B, H, W), got {tuple(labels.shape)}")
    if not thing_classes:
        return torch.zeros(labels.shape[0], *feature_hw, dtype=torch.bool, device=labels.device)
    things = torch.tensor(list(thing_classes), device=labels.device).view(1, -1, 1, 1)
    one_hot = (labels.unsqueeze(1) == things).float()
    coverage = F.adaptive_avg_pool2d(one_hot, feature_hw)
    # A small tolerance keeps exact ratios (e.g. 3 of 4 pixels) from failing on rounding.
    return (coverage >= min_ratio - 1e-6).any(dim=1)


def feature_distance_loss(
    student_features: torch.Tensor,
    imagenet_features: torch.Tensor,
    source_labels: torch.Tensor,
    *,
    thing_classes: Sequence[int] = THING_CLASSES,
    weight: float = 0.005,
    min_ratio: float = 0.75,
) -> torch.Tensor:
    """``weight * mean`` over thing cells of the channel-wise L2 distance of the features.

    Features are ``(B, C, h, w)`` (the encoder's bottleneck); the ImageNet features are
    detached. The distance is computed in float32. Returns a scalar tensor.
    """
    if student_features.shape != imagenet_features.shape or student_features.ndim != 4:
        raise ValueError(
            "student_features and imagenet_features must share one (B, C, h, w) shape, got "
            f"{tuple(student_features.shape)} and {tuple(imagenet_features.shape)}"
        )
    if source_labels.shape[0] != student_features.shape[0]:
        raise ValueError(
            f"source_labels batch {source_labels.shape[0]} != features batch "
            f"{student_features.shape[0]}"
        )
    diff = student_features.float() - imagenet_features.detach().float()
    distance = torch.linalg.vector_norm(diff, dim=1)
    mask = thing_mask(source_labels, tuple(distance.shape[-2:]), thing_classes, min_ratio)
    mask = mask.to(distance.dtype)
    # Division by max(count, 1): an empty mask gives 0 * finite = 0 with a zero gradient.
    mean = (distance * mask).sum() / mask.sum().clamp_min(1.0)
    return weight * mean


class ImageNetFeatureDistance:
    """The source pass's feature-distance term: the frozen ImageNet network sees the LR
    context the student saw (``scale``-times smaller) and pulls its bottleneck features."""

    def __init__(
        self,
        network: SegmentationNetwork,
        *,
        scale: int,
        weight: float,
        autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.network = network.eval().requires_grad_(False)
        self.scale = scale
        self.weight = weight
        self.autocast = autocast

    def __call__(
        self, images: torch.Tensor, output: MultiResOutput, labels: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad(), self.autocast():
            small = F.interpolate(
                images, scale_factor=1 / self.scale, mode="bilinear", align_corners=False
            )
            imagenet_features = self.network.extract(small)
        assert output.context_features is not None
        return feature_distance_loss(
            output.context_features[-1].float(),
            imagenet_features[-1].float(),
            labels,
            weight=self.weight,
        )
