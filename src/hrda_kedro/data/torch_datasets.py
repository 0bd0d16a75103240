"""A torch ``Dataset`` over an ingestion manifest.

Files were checked at ingestion, so loading here is plain decoding (Pillow), optionally
resized to the manifest's ``load_height x load_width`` (HRDA's input size, e.g. GTA5 to
2560x1440: image bilinear, label nearest as OpenCV's ``INTER_NEAREST``, which mmcv uses for
the official labels) and optionally kept in memory, so that a training run decodes each
file once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from hrda_kedro.data import DataError
from hrda_kedro.data.validation import rgb_pixels


def _present(path: object) -> bool:
    """A label path is absent as None, NaN (CSV round trip) or an empty string."""
    return isinstance(path, str) and path != ""


def _read(path: str, kind: str) -> np.ndarray:
    """Pixels of a manifest's image (as RGB, converted as ingestion and ``predict`` read
    it: :func:`~hrda_kedro.data.validation.rgb_pixels`) or label.

    The files were checked at ingestion; one moved, deleted or rewritten since would
    otherwise surface as a bare Pillow error from inside the training loop.
    """
    try:
        with Image.open(path) as file:
            return rgb_pixels(file) if kind == "image" else np.array(file)
    except Exception as err:  # Pillow's many error types: see data.validation._DECODE_ERRORS
        raise DataError(
            f"{path}: cannot read this {kind} ({err}); expected the file the ingestion "
            "pipeline checked: it was moved, deleted or changed since, re-run ingestion"
        ) from None


def _nearest_source_index(source: int, target: int) -> torch.Tensor:
    """OpenCV ``INTER_NEAREST``'s source index of each target index: ``floor(i * ifx)``,
    clipped to the last source pixel, with ``ifx = 1 / (target / source)`` in double
    precision exactly as OpenCV computes it (its rounding decides ties)."""
    inverse_scale = 1.0 / (target / source)
    index = np.floor(np.arange(target, dtype=np.float64) * inverse_scale).astype(np.int64)
    return torch.from_numpy(np.minimum(index, source - 1))


def resize_label_nearest(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``label (..., H, W)`` resized to ``size`` as the official pipeline does it (mmcv's
    ``imrescale(..., interpolation='nearest')``: OpenCV ``INTER_NEAREST``, ``src =
    floor(dst * scale)``), not pixel-centre nearest: no OpenCV dependency for one gather."""
    rows = _nearest_source_index(label.shape[-2], size[0])
    cols = _nearest_source_index(label.shape[-1], size[1])
    return label[..., rows[:, None], cols[None, :]]


class ManifestDataset(Dataset):
    """Items ``{"image": uint8 (3, H, W), "label": int64 (H, W), "index": int}``.

    ``labels=False`` leaves labels out (target images for self-training must never carry
    them); rows without a ``label_path`` have no ``"label"`` either. With ``cache=True``
    decoded tensors stay in memory (per process: with DataLoader workers each worker
    keeps its own copy).
    """

    def __init__(
        self, manifest: pd.DataFrame, labels: bool = True, resize: bool = True, cache: bool = False
    ):
        if len(manifest) == 0:
            raise ValueError("manifest: expected at least one row, got an empty manifest")
        missing = {"image_path", "label_path", "load_height", "load_width"} - set(manifest.columns)
        if missing:
            raise ValueError(f"manifest: missing columns {sorted(missing)}")
        self.image_paths = [str(p) for p in manifest["image_path"]]
        self.label_paths = [p if labels and _present(p) else None for p in manifest["label_path"]]
        self.sizes = [
            (int(h), int(w)) if resize else None
            for h, w in zip(manifest["load_height"], manifest["load_width"], strict=True)
        ]
        self._cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.image_paths)

    def _load(self, index: int) -> dict[str, torch.Tensor]:
        pixels = _read(self.image_paths[index], "image")
        image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
        size = self.sizes[index]
        if size is not None and tuple(image.shape[-2:]) != size:
            # Deferred: torchvision's import loads torch._dynamo (2 s of every `kedro`
            # command).
            from torchvision.transforms.v2 import InterpolationMode
            from torchvision.transforms.v2 import functional as F

            image = F.resize(
                image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True
            )
        item = {"image": image}
        label_path = self.label_paths[index]
        if label_path is not None:
            label = torch.from_numpy(_read(label_path, "label"))[None]
            if size is not None and tuple(label.shape[-2:]) != size:
                label = resize_label_nearest(label, size)
            item["label"] = label[0].long()
        return item

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if self._cache is None:
            item = self._load(index)
        else:
            if index not in self._cache:
                self._cache[index] = self._load(index)
            item = dict(self._cache[index])
        return {**item, "index": index}
