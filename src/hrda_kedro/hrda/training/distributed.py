"""Data parallelism of a stage: the DDP wrapper, deferred gradient all-reduce, rank 0's
BatchNorm buffers for the teacher, and every rank's generator states at a checkpoint."""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.training.devices import DeviceSetup


def wrap_ddp(model: HRDAModel, setup: DeviceSetup, world_size: int) -> nn.Module:
    """The module the step calls: ``model`` itself, or with several ranks its DDP wrapper
    (``HRDAModel.forward`` is the training pass, so DDP can wrap the model itself)."""
    if world_size == 1:
        return model
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[setup.device.index] if setup.device.type == "cuda" else None,
        # Every mode but "hrda" leaves the attention head without gradients.
        find_unused_parameters=model.mode != "hrda",
    )


def no_sync(forward_train: Any, defer: bool) -> Any:
    """With ``defer``, no gradient all-reduce in this pass's backward: a later pass's
    backward all-reduces the summed gradients once."""
    context = getattr(forward_train, "no_sync", None)
    return context() if defer and context is not None else nullcontext()


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's BatchNorm statistics now, not at the next forward as DDP
    does: the teacher copies the student's buffers, and each rank's own batch moved them."""
    buffers = list(model.buffers())
    for dtype in dict.fromkeys(b.dtype for b in buffers):  # same order on every rank
        group = [b for b in buffers if b.dtype == dtype]
        flat = torch.cat([b.reshape(-1) for b in group])
        dist.broadcast(flat, src=0)
        torch._foreach_copy_(
            group,
            [
                v.view_as(b)
                for v, b in zip(flat.split([b.numel() for b in group]), group, strict=True)
            ],
        )


def gather_rank_states(
    own: dict[str, Any], world_size: int, teacher: nn.Module | None, stage: str, iteration: int
) -> list[dict[str, Any]]:
    """Every rank's generator states ``own`` (ranks draw their own batches, so each resumes
    its own sequence) with its teacher's digest: a diverged teacher stops the run before a
    save. A collective call that every rank makes."""
    own = {**own, "teacher_digest": "" if teacher is None else state_digest(teacher.state_dict())}
    ranks: list[Any] = [None] * world_size
    dist.all_gather_object(ranks, own)
    digests = [r["teacher_digest"] for r in ranks]
    if len(set(digests)) > 1:
        raise RuntimeError(
            f"{stage}: EMA teachers differ across ranks at iteration {iteration}: {digests}"
        )
    return ranks


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the exact bytes of every tensor: proves weights identical, not just close."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
