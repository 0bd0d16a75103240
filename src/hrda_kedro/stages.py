"""Run one training stage in this process or in data-parallel worker processes.

Kedro has no launcher for torchrun-style jobs, so ``kedro run`` stays the entry point and
the training node starts its own workers (``torch.multiprocessing.spawn``) when
``runtime.devices > 1``. Every worker trains a DistributedDataParallel replica on its own
batches; gradients are averaged, so the students and hence the EMA teachers stay
identical on every rank. Only rank 0 writes the in-training checkpoint, from which the
parent process then reads the final state.

Several machines: run the same ``kedro run`` on each with ``MASTER_ADDR``,
``MASTER_PORT``, ``NNODES`` and ``NODE_RANK`` set; ranks are ``NODE_RANK * devices +
local rank``.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from hrda_kedro.hrda.checkpoint import load_checkpoint
from hrda_kedro.hrda.networks.base import SegmentationNetwork
from hrda_kedro.hrda.uda.trainer import (
    StageResult,
    Trainer,
    history_from_columns,
    history_to_columns,
)
from hrda_kedro.params import ModelParams, RuntimeParams, TrainingParams
from hrda_kedro.runtime import build_model, load_weights, model_params_dict, resolve_device

logger = logging.getLogger(__name__)


@dataclass
class StageJob:
    """Everything a (possibly remote-process) worker needs to run a stage."""

    stage: str
    model_params: ModelParams
    train_params: TrainingParams
    runtime: RuntimeParams
    source: Dataset
    target: Dataset | None
    class_pixel_counts: np.ndarray | None
    init_model: dict[str, torch.Tensor] | None
    init_teacher: dict[str, torch.Tensor] | None
    imagenet_network: SegmentationNetwork | None
    checkpoint_path: Path
    fingerprint: str


def _make_trainer(job: StageJob, rank: int, world_size: int) -> Trainer:
    setup = resolve_device(job.runtime, rank=rank % max(torch.cuda.device_count(), 1))
    torch.manual_seed(job.runtime.seed)  # identical initial weights on every rank
    model = build_model(job.model_params)
    if job.init_model is not None:
        load_weights(model, job.init_model, f"{job.stage} input model")
    return Trainer(
        model,
        job.train_params,
        job.model_params.hrda,
        source=job.source,
        target=job.target,
        setup=setup,
        seed=job.runtime.seed,
        source_class_pixel_counts=job.class_pixel_counts,
        teacher_state=job.init_teacher,
        imagenet_network=job.imagenet_network,
        stage=job.stage,
        rank=rank,
        world_size=world_size,
        progress_bar=job.runtime.progress_bar,
    )


def run_stage(job: StageJob) -> StageResult:
    """Train one stage, resuming from ``job.checkpoint_path`` when it matches the job."""
    devices = job.runtime.devices
    nnodes = int(os.environ.get("NNODES", "1"))
    if devices == 1 and nnodes == 1:
        return _make_trainer(job, rank=0, world_size=1).run(job.checkpoint_path, job.fingerprint)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    logger.info("%s: starting %d worker processes x %d node(s)", job.stage, devices, nnodes)
    mp.spawn(_worker, args=(job, devices, nnodes), nprocs=devices, join=True)
    state = load_checkpoint(job.checkpoint_path)
    return StageResult(
        model=state["model"],
        teacher=state.get("teacher"),
        history=history_from_columns(state["history"]),
        iterations=int(state["iteration"]),
    )


def _worker(local_rank: int, job: StageJob, devices: int, nnodes: int) -> None:
    node_rank = int(os.environ.get("NODE_RANK", "0"))
    rank = node_rank * devices + local_rank
    world_size = devices * nnodes
    backend = "nccl" if torch.cuda.is_available() and job.runtime.device != "cpu" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        trainer = _make_trainer(job, rank=rank, world_size=world_size)
        trainer.run(job.checkpoint_path if rank == 0 else None, job.fingerprint)
        _check_teachers_agree(trainer)
    finally:
        dist.destroy_process_group()


def _check_teachers_agree(trainer: Trainer) -> None:
    """All ranks must end with the same EMA teacher; a divergence is a bug, not noise."""
    if trainer.teacher is None:
        return
    flat = torch.cat([p.detach().float().flatten() for p in trainer.teacher.model.parameters()])
    summary = torch.stack([flat.sum(), flat.abs().sum()]).to(trainer.setup.device)
    gathered = [torch.zeros_like(summary) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, summary)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"{trainer.stage}: EMA teachers differ across ranks: {gathered}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def checkpoint_payload(
    result: StageResult, model_params: ModelParams, stage: str, **extra: Any
) -> dict[str, Any]:
    """The catalog checkpoint of a finished stage."""
    return {
        "stage": stage,
        "iterations": result.iterations,
        "model_params": model_params_dict(model_params),
        "model": result.model,
        "teacher": result.teacher,
        "history": history_to_columns(result.history),
        **extra,
    }
