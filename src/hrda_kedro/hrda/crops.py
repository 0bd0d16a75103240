"""Boxes and the aligned, uniform sampling of HRDA's context and detail crops.

Crops are explicit :class:`Box` values drawn per sample, so every image of a batch gets its
own context and detail region and the boxes can be logged, replayed and tested. Corners are
multiples of ``align`` (HRDA uses ``k = s * o``) so that the LR grid, the HR grid and the
network's output grid stay aligned and the fusion is exact at the box edge.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class Box:
    """An axis-aligned region ``[top, top + height) x [left, left + width)`` in pixels."""

    top: int
    left: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            try:
                # operator.index accepts Python and NumPy integers but rejects floats.
                object.__setattr__(self, field.name, operator.index(value))
            except TypeError:
                raise ValueError(f"Box.{field.name} must be an integer, got {value!r}") from None
        if self.top < 0 or self.left < 0:
            raise ValueError(f"Box top/left must be >= 0, got top={self.top}, left={self.left}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(
                f"Box height/width must be > 0, got height={self.height}, width={self.width}"
            )

    @property
    def bottom(self) -> int:
        """Exclusive bottom edge."""
        return self.top + self.height

    @property
    def right(self) -> int:
        """Exclusive right edge."""
        return self.left + self.width

    def crop(self, tensor: torch.Tensor) -> torch.Tensor:
        """View of ``tensor[..., top:bottom, left:right]``.

        Raises instead of letting slicing silently return a smaller crop when the box
        sticks out of the tensor.
        """
        if tensor.dim() < 2:
            raise ValueError(
                f"Box.crop needs a tensor with >= 2 dims, got shape {tuple(tensor.shape)}"
            )
        height, width = tensor.shape[-2:]
        if self.bottom > height or self.right > width:
            raise ValueError(f"{self} does not fit in a tensor of spatial size {height}x{width}")
        return tensor[..., self.top : self.bottom, self.left : self.right]

    def scaled_down(self, factor: int) -> Box:
        """The same region on a grid ``factor`` times coarser; every coordinate must divide."""
        if operator.index(factor) <= 0:
            raise ValueError(f"scale factor must be a positive integer, got {factor}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        inexact = [name for name, value in values.items() if value % factor]
        if inexact:
            raise ValueError(
                f"{self} cannot be scaled down by {factor}: {', '.join(inexact)} not divisible"
            )
        return Box(**{name: value // factor for name, value in values.items()})


def check_hw(name: str, hw: tuple[int, int]) -> tuple[int, int]:
    """A ``(height, width)`` pair of positive integers, or a ValueError naming ``name``."""
    if len(hw) != 2:
        raise ValueError(f"{name} must be (height, width), got {hw!r}")
    height, width = (operator.index(v) for v in hw)
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} must be positive, got {hw!r}")
    return height, width


def _randint(high: int, generator: torch.Generator | None) -> int:
    """One integer uniform in ``[0, high)`` drawn on the host."""
    return int(torch.randint(high, (1,), generator=generator).item())


def sample_box(
    container_hw: tuple[int, int],
    box_hw: tuple[int, int],
    align: int,
    generator: torch.Generator | None = None,
) -> Box:
    """Draw a ``box_hw`` box inside ``container_hw``, uniform over all aligned positions.

    Both corners are multiples of ``align``: the box size must be a multiple of ``align``
    and the offsets range over ``0, align, ..., floor((H - h) / align) * align``, the last
    position included (the official code never reaches it). The container itself need not
    be a multiple of ``align``. ``generator`` must be a CPU generator; sampling happens on
    the host so it never synchronises with an accelerator.
    """
    container_h, container_w = check_hw("container_hw", container_hw)
    box_h, box_w = check_hw("box_hw", box_hw)
    align = operator.index(align)
    if align <= 0:
        raise ValueError(f"align must be a positive integer, got {align}")
    if box_h % align or box_w % align:
        raise ValueError(f"box size {box_h}x{box_w} must be a multiple of align={align}")
    if box_h > container_h or box_w > container_w:
        raise ValueError(
            f"box size {box_h}x{box_w} is larger than the container {container_h}x{container_w}"
        )
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
    top = _randint((container_h - box_h) // align + 1, generator) * align
    left = _randint((container_w - box_w) // align + 1, generator) * align
    return Box(top, left, box_h, box_w)
