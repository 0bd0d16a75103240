"""Data-parallel stages: 2 worker processes on CPU (gloo) against a 1-process run.

Expected difference from 1 process: the initial weights and rank 0's batches are those of
the 1-process run, so the first step's loss is the same; from then on the 2-process model
moves with the gradient averaged over both ranks' (different) batches, so its weights and
later losses differ. The history is rank 0's own losses; the EMA teacher is identical on
every rank and its per-rank digests are recorded in the last checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from hrda_kedro.hrda.checkpoint import load_checkpoint
from hrda_kedro.hrda.model_config import ModelConfig
from hrda_kedro.hrda.training.distributed import state_digest
from hrda_kedro.params import RuntimeParams, SelfTrainingParams, parse
from hrda_kedro.stages import StageJob, run_stage
from tests.tiny_data import TinySegmentationSet

MODEL = {
    "network": {"encoder": "mit-nano", "decoder_embed_dim": 16, "attention_embed_dim": 16},
    "hrda": {"context_crop": [64, 64], "detail_crop": [32, 32]},
}
SELF_TRAINING = {
    "iterations": 3,
    "source_batch_size": 1,
    "target_batch_size": 1,
    "log_every": 1,
    "checkpoint_every": 2,
    "optimizer": {"lr": 1e-3, "warmup_iters": 1},
    "rare_class_sampling": {"min_pixels": 20, "reference_size": None},
    "pseudo_labels": {"margins": [2, 4, 2, 2], "margins_reference_size": None},
}


def _job(work_dir: Path, devices: int, mode: str = "hrda") -> StageJob:
    model = {**MODEL, "hrda": {**MODEL["hrda"], "mode": mode}}
    source = TinySegmentationSet(4, seed=1)
    train = parse(SelfTrainingParams, SELF_TRAINING, "self_training")
    return StageJob(
        stage="round_1",
        model_params=parse(ModelConfig, model, "model"),
        train_params=train,
        uda=train,
        runtime=parse(
            RuntimeParams,
            {
                "device": "cpu",
                "devices": devices,
                "seed": 3,
                "progress_bar": False,
                "work_dir": str(work_dir),
            },  # fmt: skip
            "runtime",
        ),
        source=source,
        target=TinySegmentationSet(4, seed=2, with_labels=False),
        class_pixel_counts=source.class_counts(),
        fingerprint="job",
    )


def test_two_processes_train_with_identical_teachers(tmp_path: Path) -> None:
    single = run_stage(_job(tmp_path / "one", devices=1))
    double = run_stage(_job(tmp_path / "two", devices=2))

    assert double.iterations == single.iterations == 3
    assert [r["iteration"] for r in double.history] == [1.0, 2.0, 3.0]
    ranks = load_checkpoint(tmp_path / "two" / "round_1" / "state.pt")["ranks"]
    assert [r["teacher_digest"] for r in ranks] == [state_digest(double.teacher)] * 2
    assert double.history[0]["loss"] == pytest.approx(single.history[0]["loss"], rel=1e-5)
    assert not all(torch.equal(double.model[k], single.model[k]) for k in single.model)
    assert all(torch.isfinite(v).all() for v in double.teacher.values() if v.is_floating_point())


def test_unused_attention_head_and_resume_on_every_rank(tmp_path: Path) -> None:
    """lr_only leaves the attention head unused; a stopped run resumes on both ranks."""
    job = _job(tmp_path / "lr", devices=2, mode="lr_only")
    stopped = dataclasses.replace(
        job, train_params=dataclasses.replace(job.train_params, iterations=2)
    )
    assert run_stage(stopped).iterations == 2
    first = load_checkpoint(job.checkpoint_path)["ranks"]
    assert not torch.equal(first[0]["data_generator"], first[1]["data_generator"])

    resumed = run_stage(job)  # would hang or fail if rank 1 started again from iteration 0
    assert resumed.iterations == 3
    assert [r["iteration"] for r in resumed.history] == [1.0, 2.0, 3.0]
    ranks = load_checkpoint(job.checkpoint_path)["ranks"]
    assert [r["teacher_digest"] for r in ranks] == [state_digest(resumed.teacher)] * 2
