"""Checkpoint files: written atomically, read without executing pickled code.

A checkpoint is a plain dictionary of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: a file carrying a malicious pickle is
refused instead of run. Writes go to a temporary file in the same folder, are flushed to
disk, and only then renamed over the target, so a crash or a full disk mid-write leaves
the previous checkpoint intact and never a truncated file under the real name.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

FORMAT = "hrda-kedro/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or of another model."""


def _umask() -> int:
    """The process umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling file and an atomic rename.

    The file gets the permissions a plain ``open(path, "wb")`` would give (``0666`` less the
    umask, as every other output), not ``mkstemp``'s private ``0600``: checkpoints on shared
    storage must be readable by the team.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # "[Errno 28] No space left on device: '<path>'"
        raise


def to_bytes(checkpoint: dict[str, Any]) -> bytes:
    """Serialise a checkpoint dictionary (tensors are moved to the CPU first)."""
    buffer = io.BytesIO()
    torch.save(_to_cpu(checkpoint), buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Atomically write ``checkpoint`` (tagged with the format version) to ``path``."""
    atomic_write_bytes(path, to_bytes({"format": FORMAT, **checkpoint}))


def from_bytes(data: bytes, source: str) -> dict[str, Any]:
    """Deserialise with ``weights_only=True``; ``source`` names the file in errors."""
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{source}: refused to load: the file holds objects other than tensors and plain "
            f"values (a pickle that could run code), or is not a checkpoint "
            f"({load_error_reason(exc)}); expected a checkpoint written by hrda-kedro"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types on garbage input
        raise CheckpointError(
            f"{source}: not a readable PyTorch checkpoint, truncated or of another format "
            f"({load_error_reason(exc)}); expected a checkpoint written by hrda-kedro"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{source}: not an hrda-kedro checkpoint (expected a dict with format={FORMAT!r})"
        )
    return checkpoint


_TORCH_ADVICE = ("Weights only load failed", "Check the documentation", "Please file an issue")


def load_error_reason(exc: Exception) -> str:
    """What torch found wrong, in one line (e.g. ``unsupported GLOBAL posix.system``).

    torch's refusal also suggests re-running with ``weights_only=False``: for a file that
    was just refused as unsafe that is the one advice a user must not follow, so it is cut.
    """
    lines = [line.strip() for line in str(exc).splitlines()]
    reasons = [line for line in lines if line and not line.startswith(_TORCH_ADVICE)]
    return f"{type(exc).__name__}: {reasons[0]}" if reasons else type(exc).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    return from_bytes(path.read_bytes(), str(path))


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
