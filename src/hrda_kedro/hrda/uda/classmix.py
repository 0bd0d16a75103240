"""ClassMix: paste half of a source image's classes onto a target image.

Mixing gives the student target-domain context around source objects whose labels are
exact, and source context around target regions labelled by the teacher.

As in the official DACS code, the pool is every label value present, the ignore label
255 included: when it is drawn, the source's unlabelled regions (e.g. GTA5's ego-vehicle
hood) are pasted too, keep label 255 and so hide those target pixels from the loss; ``n``
counts it, so ``ceil(n / 2)`` is the official number of pasted values.

Difference from the official code (deliberate): the classes are chosen *per image* from
the values present in that image's own label; the official code draws them from the
values of the whole source batch, so an image may get a mask from classes it does not
contain (an empty paste). The selection is fully vectorised on the labels' device: random
keys per class, the ``ceil(n / 2)`` smallest keys among the present values win, which is
a uniform draw without replacement and needs no host synchronisation.
"""

from __future__ import annotations

import torch

# Label values are used as indices into a per-image class table of this size.
_NUM_LABEL_VALUES = 256


def classmix_masks(source_labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Boolean masks ``(B, 1, H, W)``: True where the source pixel's label value was chosen.

    Per image, ``ceil(n / 2)`` of its ``n`` present label values (the ignore label
    included, as officially) are chosen uniformly without replacement. Labels must lie in
    ``[0, 255]``. The random keys are drawn on ``generator``'s device, so one CPU generator
    reproduces the same choice on any device.
    """
    if source_labels.ndim != 3:
        raise ValueError(f"source_labels must be (B, H, W), got {tuple(source_labels.shape)}")
    batch, height, width = source_labels.shape
    device = source_labels.device
    flat = source_labels.reshape(batch, -1).long()
    present = torch.zeros(batch, _NUM_LABEL_VALUES, dtype=torch.bool, device=device)
    present.scatter_(1, flat, True)
    n_present = present.sum(dim=1, keepdim=True)
    n_chosen = (n_present + 1) // 2

    keys = torch.rand(batch, _NUM_LABEL_VALUES, generator=generator, device=generator.device)
    keys = keys.to(device, non_blocking=True).masked_fill(~present, 2.0)  # absent classes sort last
    order = keys.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(_NUM_LABEL_VALUES, device=device).expand(batch, -1))
    chosen = present & (ranks < n_chosen)
    return chosen.gather(1, flat).view(batch, 1, height, width)


def mix_batch(  # noqa: PLR0917 - three aligned (image, label, weight) pairs
    masks: torch.Tensor,
    source_images: torch.Tensor,
    target_images: torch.Tensor,
    source_labels: torch.Tensor,
    pseudo_labels: torch.Tensor,
    pseudo_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixed images, labels and weights: source (weight 1) inside the mask, target outside.

    Shapes: masks ``(B, 1, H, W)`` bool, images ``(B, 3, H, W)``, labels and weights
    ``(B, H, W)``. Source pixels get weight 1 because their labels are ground truth.
    """
    expected = masks.shape[-2:]
    for name, tensor in (
        ("source_images", source_images),
        ("target_images", target_images),
        ("source_labels", source_labels),
        ("pseudo_labels", pseudo_labels),
        ("pseudo_weights", pseudo_weights),
    ):
        if tensor.shape[0] != masks.shape[0] or tensor.shape[-2:] != expected:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}, expected batch {masks.shape[0]} "
                f"and size {tuple(expected)} like the masks"
            )
    masks = masks.bool()
    mixed_images = torch.where(masks, source_images, target_images)
    pixel_mask = masks[:, 0]
    mixed_labels = torch.where(pixel_mask, source_labels, pseudo_labels)
    mixed_weights = torch.where(pixel_mask, torch.ones_like(pseudo_weights), pseudo_weights)
    return mixed_images, mixed_labels, mixed_weights
