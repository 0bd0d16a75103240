"""Run one training stage in this process or in data-parallel worker processes.

Kedro has no launcher for torchrun-style jobs, so ``kedro run`` stays the entry point and
the training node starts its own workers (``torch.multiprocessing.spawn``) when
``runtime.devices > 1``. Every worker trains a DistributedDataParallel replica on its own
batches; gradients are averaged, so the students and hence the EMA teachers stay
identical on every rank (checked at every checkpoint). Every rank resumes from the
in-training checkpoint, only rank 0 writes it, and the parent process reads the final
state from it.

Several machines: run the same ``kedro run`` on each with ``MASTER_ADDR``,
``MASTER_PORT``, ``NNODES`` and ``NODE_RANK`` set (or under ``srun``, see
:mod:`hrda_kedro.launch`); ranks are ``NODE_RANK * devices + local rank``;
``runtime.work_dir`` must be storage that all machines share. Node 0 runs the pipeline and
hands each stage to the other nodes, which only train (:func:`serve_stages`).
"""

from __future__ import annotations

import logging
import logging.config
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException
from torch.utils.data import Dataset

from hrda_kedro import tracking
from hrda_kedro.data.labels import CITYSCAPES_CLASSES
from hrda_kedro.hrda.checkpoint import load_checkpoint
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.networks.base import SegmentationNetwork
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.training.history import history_from_columns, history_to_columns
from hrda_kedro.hrda.training.streams import StageData
from hrda_kedro.hrda.training.trainer import StageResult, Trainer
from hrda_kedro.hrda.uda.config import UDAConfig
from hrda_kedro.launch import Cluster, cluster, stage_channel
from hrda_kedro.params import RuntimeParams
from hrda_kedro.parent_watch import exit_with_parent
from hrda_kedro.runtime.devices import resolve_device
from hrda_kedro.runtime.models import build_model, load_weights, model_params_dict
from hrda_kedro.runtime.training_data import check_images_fit, source_datasets

logger = logging.getLogger(__name__)


@dataclass
class StageJob:
    """Everything a (possibly remote-process) worker needs to run a stage."""

    stage: str
    model_params: ModelConfig
    train_params: TrainingConfig
    runtime: RuntimeParams
    source: Dataset
    class_pixel_counts: np.ndarray | None
    fingerprint: str
    uda: UDAConfig | None = None  # None: source-only
    target: Dataset | None = None
    init_model: dict[str, torch.Tensor] | None = None  # None: the network's initial weights
    init_teacher: dict[str, torch.Tensor] | None = None
    imagenet_network: SegmentationNetwork | None = None
    on_log: Callable[[str, list[dict[str, float]]], None] | None = None  # rank 0's history rows

    @property
    def checkpoint_path(self) -> Path:
        """The stage's in-training checkpoint, in its own folder of ``runtime.work_dir``."""
        return Path(self.runtime.work_dir) / self.stage / "state.pt"


def source_stage_job(
    stage: str,
    model_params: ModelConfig,
    train_params: TrainingConfig,
    runtime: RuntimeParams,
    source_manifest: pd.DataFrame,
    source_class_pixel_counts: pd.DataFrame,
    **job: Any,
) -> StageJob:
    """The job of a stage that trains on the labelled source set (every stage does; a round
    adds its target and models through ``job``), once the source images hold the crop."""
    check_images_fit(source_manifest, model_params, "source_train")
    group = "warmup" if job.get("uda") is None else "self_training"
    source, counts = source_datasets(
        source_manifest, source_class_pixel_counts, train_params, group
    )
    return StageJob(
        stage, model_params, train_params, runtime, source, class_pixel_counts=counts, **job
    )


def _make_trainer(
    job: StageJob, rank: int, world_size: int, setup: DeviceSetup | None = None
) -> Trainer:
    setup = setup or resolve_device(job.runtime)
    torch.manual_seed(job.runtime.seed)  # identical initial weights on every rank
    model = build_model(job.model_params)
    if job.init_model is not None:
        load_weights(model, job.init_model, f"{job.stage} input model")
    hrda = job.model_params.hrda
    classes = CITYSCAPES_CLASSES[: job.model_params.network.num_classes]
    return Trainer(
        model,
        job.train_params,
        StageData(job.source, job.target, job.class_pixel_counts, classes),
        context_crop=hrda.context_crop,
        hr_loss_weight=hrda.hr_loss_weight,
        uda=job.uda,
        setup=setup,
        seed=job.runtime.seed,
        teacher_state=job.init_teacher,
        imagenet_network=job.imagenet_network,
        stage=job.stage,
        rank=rank,
        world_size=world_size,
        progress_bar=job.runtime.progress_bar,
        on_log=job.on_log,
    )


def run_stage(job: StageJob) -> StageResult:
    """Train one stage, resuming from ``job.checkpoint_path`` when it matches the job."""
    where = cluster()
    if job.on_log is None:  # with the mlflow extra and an active run: log the history there
        job = replace(job, on_log=tracking.stage_logger())
    devices = job.runtime.devices
    if devices * where.nnodes == 1 or job.train_params.iterations == 0:  # 0: no checkpoint
        return _make_trainer(job, rank=0, world_size=1).run(job.checkpoint_path, job.fingerprint)
    if where.nnodes > 1:
        stage_channel(where).send(job)  # the other nodes start their ranks for it
    _spawn_workers(job, where)
    state = load_checkpoint(job.checkpoint_path)
    if state.get("teacher") is not None:
        digest = state["ranks"][0]["teacher_digest"]
        logger.info("%s: EMA teacher identical on all ranks (sha256 %s)", job.stage, digest[:16])
    return StageResult(
        model=state["model"],
        teacher=state.get("teacher"),
        history=history_from_columns(state["history"]),
        iterations=int(state["iteration"]),
    )


def serve_stages(where: Cluster) -> int:
    """Nodes > 0: train every stage node 0 hands over, until it is done; returns the count.

    These nodes run no pipeline node and write no catalog output: node 0 is the only writer.
    """
    channel = stage_channel(where)
    served = 0
    while (job := channel.receive()) is not None:
        logger.info("node %d: training %s for node 0", where.node_rank, job.stage)
        _spawn_workers(job, where)
        served += 1
    return served


def _spawn_workers(job: StageJob, where: Cluster) -> None:
    devices = job.runtime.devices
    # Read here, not in the workers, so that each stage of one run gets a port of its own.
    port = where.master_port or _free_port()
    logger.info("%s: starting %d worker processes x %d node(s)", job.stage, devices, where.nnodes)
    try:
        mp.spawn(
            _worker,
            args=(
                job,
                devices,
                where,
                f"tcp://{where.master_addr}:{port}",
                _logging_config(),
                os.getpid(),
            ),
            nprocs=devices,
            join=True,
        )
    except ProcessException as exc:
        raise RuntimeError(f"{job.stage}: data-parallel worker failed: {exc}") from exc


def _logging_config() -> dict[str, Any] | None:
    """The parent's Kedro logging configuration, for rank 0 of the spawned workers."""
    try:
        from kedro.framework.project import LOGGING
    except ImportError:  # pragma: no cover - kedro is a dependency
        return None
    return dict(LOGGING.data) or None


def _worker(
    local_rank: int,
    job: StageJob,
    devices: int,
    where: Cluster,
    init_method: str,
    logging_config: dict[str, Any] | None,
    parent_pid: int,
) -> None:
    """One rank: the device is picked by the local rank, the backend by the device."""
    exit_with_parent(parent_pid)
    rank = where.node_rank * devices + local_rank
    world_size = devices * where.nnodes
    if rank == 0 and logging_config:  # a spawned process starts without handlers
        logging.config.dictConfig(logging_config)
    elif rank != 0:  # only rank 0 logs progress; warnings and errors still show
        logging.getLogger("hrda_kedro").setLevel(logging.WARNING)
    setup = resolve_device(job.runtime, rank=local_rank)
    if setup.device.type == "cuda":
        torch.cuda.set_device(setup.device)
    else:  # the ranks share the cores; oversubscribed threads slow every rank down
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    backend = "nccl" if setup.device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    try:
        trainer = _make_trainer(job, rank=rank, world_size=world_size, setup=setup)
        # The world size is part of the job: resuming with another one starts afresh.
        trainer.run(job.checkpoint_path, f"{job.fingerprint}/{world_size} ranks")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def checkpoint_payload(
    result: StageResult, model_params: ModelConfig, stage: str, **extra: Any
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
