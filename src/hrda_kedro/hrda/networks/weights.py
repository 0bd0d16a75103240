"""Reading local pretrained weights safely and loading them with a full account of mismatches.

Nothing here downloads: a Hugging Face repo id is only looked up in the local cache
(``local_files_only=True``), and pickled files are read with ``weights_only=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from hrda_kedro.hrda.checkpoint import load_error_reason


class WeightsError(ValueError):
    """Pretrained weights a setting points at are missing, unreadable or of another network:
    the user's file, so the message names it and what was expected."""


logger = logging.getLogger(__name__)

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_MAX_LISTED_KEYS = 8


def _snapshot_folder(folder: Path) -> Path:
    """The snapshot a ``models--org--name`` cache folder points to, or ``folder`` itself."""
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return folder
    ref = folder / "refs" / "main"
    if ref.is_file():
        return snapshots / ref.read_text().strip()
    candidates = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(candidates) != 1:
        raise WeightsError(
            f"pretrained cache folder {folder} has no refs/main and {len(candidates)} snapshots; "
            "point `pretrained` at one snapshot folder"
        )
    return candidates[0]


def _cached_repo_folder(repo_id: str) -> Path:
    """Local snapshot of a Hugging Face repo the user already downloaded."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.utils import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError):
        # huggingface_hub's own text advises enabling downloads, which this project never does.
        raise WeightsError(
            f"pretrained {repo_id!r} is neither a local path nor a repo in the local Hugging Face "
            f"cache {constants.HF_HUB_CACHE} (nothing is downloaded); expected a local weights "
            "file, a Hugging Face model folder or the id of a repo downloaded there"
        ) from None


# Suffixes of weights files: a missing ``org/model.pth`` is a missing file, not a repo id.
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def _looks_like_repo_id(location: str) -> bool:
    parts = location.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not location.startswith((".", "~"))
        and not location.endswith(WEIGHT_FILE_SUFFIXES)
    )


def local_weights_file(location: str, what: str) -> Path:
    """A weights file that must be on disk as given (no Hugging Face folder or cache):
    DeepLabV2's ResNet-101 state dict."""
    path = Path(location).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"pretrained {what} weights file {path} does not exist; expected a local .pth "
            "state dict"
        )
    return path


def resolve_weights(location: str) -> tuple[Path, Path | None]:
    """Weights file and, for Hugging Face folders, their ``config.json`` (or None).

    ``location`` is a weights file, a Hugging Face model folder, a cache folder
    ``models--org--name`` or a repo id such as ``nvidia/mit-b5`` present in the local cache.
    """
    path = Path(location).expanduser()
    if path.is_file():
        config = path.parent / "config.json"
        return path, config if path.name in HF_WEIGHT_FILES and config.is_file() else None
    if path.is_dir():
        folder = _snapshot_folder(path)
    elif _looks_like_repo_id(location):
        folder = _cached_repo_folder(location)
    else:
        raise WeightsError(
            f"pretrained weights path {location!r} does not exist; expected a local weights "
            "file (e.g. mit_b5.pth, model.safetensors), a Hugging Face model folder or the "
            "id of a repo in the local Hugging Face cache"
        )
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            config = folder / "config.json"
            return folder / name, config if config.is_file() else None
    raise WeightsError(
        f"pretrained folder {folder} holds none of {HF_WEIGHT_FILES}"
        + (" (sharded checkpoints are not supported)" if any(folder.glob("*.index.json")) else "")
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or pickled state-dict file, unwrapped from ``state_dict``."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own error types
            raise WeightsError(
                f"weights file {path} is not a readable safetensors file: {error}"
            ) from error
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types on garbage input
        raise WeightsError(
            f"weights file {path} cannot be read as a state dict with weights_only=True "
            f"({load_error_reason(error)}); expected a .pth/.bin state dict of tensors or a "
            ".safetensors file"
        ) from None
    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        content = content["state_dict"]
    if not isinstance(content, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in content.values()
    ):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return dict(content)


def _listed(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return f"{len(keys)} ({shown}{f', ... {more} more' if more > 0 else ''})"


def load_checked(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: Path,
    target: str,
    ignored_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``module`` only if it matches exactly, else raise ``ValueError``.

    A partial load would silently train from a half-random encoder, so missing keys,
    unexpected keys and shape mismatches are all errors that name ``source``. Keys under
    ``ignored_prefixes`` (e.g. the ImageNet classifier) are dropped and logged.
    """
    expected = module.state_dict()
    ignored = sorted(k for k in state if k.startswith(ignored_prefixes) and k not in expected)
    kept = {k: v for k, v in state.items() if k not in ignored}
    # Files older than BN's counter lack it; PyTorch fills it in on load.
    missing = sorted(
        k for k in expected.keys() - kept.keys() if not k.endswith("num_batches_tracked")
    )
    unexpected = sorted(kept.keys() - expected.keys())
    wrong_shape = [
        f"{k} file {tuple(kept[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(kept.keys() & expected.keys())
        if kept[k].shape != expected[k].shape
    ]
    problems = [
        f"{label}: {_listed(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", wrong_shape),
        )
        if keys
    ]
    if problems:
        raise WeightsError(f"weights file {source} does not match {target}; " + "; ".join(problems))
    module.load_state_dict(kept, strict=False)
    logger.info("Loaded %d tensors from %s into %s", len(kept), source, target)
    if ignored:
        logger.info("Ignored %s from %s", _listed(ignored), source)
