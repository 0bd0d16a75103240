"""The training step reads nothing back to the host: on a GPU every such read (``.item()``,
``.tolist()``, ``if tensor:``, a boolean mask, ``nonzero``) waits for the queued kernels,
and the paper-recipe step is already bound by launching them (README, Performance).

The only reads a step makes are of draws from the trainer's CPU generator (colour jitter
and blur gates, MIC's detail-crop corners), which never touch the device. Each step's loss
terms stay on the device until ``History.flush`` reads a log interval's worth in one
transfer; the batch thread's draws (``Trainer.draw``) are of host images.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.training.history import History
from hrda_kedro.hrda.training.trainer import Trainer
from hrda_kedro.params import SelfTrainingParams, parse
from tests.hrda.training.test_trainer import SELF_TRAINING, _trainer
from tests.tiny_data import TinySegmentationSet

# (module, function) of the reads a step may make, each of a draw from a CPU generator:
# colour jitter and blur gates, and the corners of the MIC pass's detail crops.
ALLOWED = {
    ("hrda_kedro/hrda/uda/augment.py", "strong_augment"),
    ("hrda_kedro/hrda/crops.py", "_randint"),
}
READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")
FUNCTIONS = ("nonzero", "argwhere", "unique", "masked_select")


def _site() -> tuple[str, str] | None:
    """The innermost frame of the package that made the read; None outside the package and
    in the batch thread (``Trainer.draw``: crops and rare-class draws on the host, of host
    images, ahead of the step)."""
    stack = traceback.extract_stack()[:-2]
    if any(f.name == "draw" and f.filename.endswith("training/trainer.py") for f in stack):
        return None
    for frame in reversed(stack):
        if "hrda_kedro/" in frame.filename:
            return frame.filename.split("src/")[-1], frame.name
    return None


@contextmanager
def _host_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Count, by call site, every read of a tensor's values on the host made by the package
    while the block runs (the patches are undone at its end)."""
    reads: Counter = Counter()
    recording = [True]

    def unrecorded(method: Any) -> Any:
        """A log interval's flush and the finished stage's weights read on purpose."""

        def call(*args: Any, **kwargs: Any) -> Any:
            recording[0] = False
            try:
                return method(*args, **kwargs)
            finally:
                recording[0] = True

        return call

    def counted(name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            site = _site() if recording[0] else None
            if site is not None:
                reads[(*site, name)] += 1
            return original(*args, **kwargs)

        return call

    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
        for name in FUNCTIONS:
            patch.setattr(torch, name, counted(name, getattr(torch, name)))
            patch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
        getitem = torch.Tensor.__getitem__

        def indexed(self: torch.Tensor, index: Any) -> Any:
            parts = index if isinstance(index, tuple) else (index,)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in parts):
                site = _site() if recording[0] else None
                if site is not None:
                    reads[(*site, "boolean mask")] += 1
            return getitem(self, index)

        patch.setattr(torch.Tensor, "__getitem__", indexed)
        for owner, name in ((History, "flush"), (Trainer, "result")):
            patch.setattr(owner, name, unrecorded(getattr(owner, name)))
        yield reads
        recording[0] = False


@pytest.mark.parametrize(
    ("settings", "teacher_thread"),
    [
        ({}, False),
        ({"mic": {"enabled": True}}, False),
        ({"pseudo_labels": {"weight": "pixel"}}, True),
    ],
    ids=["hrda", "mic", "pixel-weights-teacher-thread"],
)
def test_a_self_training_step_reads_only_cpu_draws_on_the_host(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], teacher_thread: bool
) -> None:
    params = parse(
        SelfTrainingParams,
        {**SELF_TRAINING, "iterations": 4, "log_every": 100, **settings},
        "self_training",
    )
    trainer = _trainer(params, TinySegmentationSet(6, seed=2))
    trainer.setup = DeviceSetup(torch.device("cpu"), teacher_thread=teacher_thread)
    with _host_reads(monkeypatch) as reads:
        trainer.run()
    assert trainer.iteration == 4
    assert {(path, function) for path, function, _ in reads} <= ALLOWED, reads
    assert trainer.mix_generator.device.type == "cpu"  # what the allowed reads draw from


def test_a_source_only_step_reads_nothing_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    params = parse(TrainingConfig, {"iterations": 4, "log_every": 100}, "warmup")
    trainer = _trainer(params)
    with _host_reads(monkeypatch) as reads:
        trainer.run()
    assert trainer.iteration == 4
    assert not reads, reads


def test_the_recorder_sees_the_packages_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not blind: a host read (a crop's corner) and ``nonzero`` (rare-class sampling's
    image lists) made by the package are counted where they are made."""
    from hrda_kedro.hrda.crops import sample_box
    from hrda_kedro.hrda.uda.rcs import RareClassSampler

    with _host_reads(monkeypatch) as reads:
        sample_box((64, 64), (32, 32), 8, torch.Generator().manual_seed(0))
        RareClassSampler(torch.ones(3, 2) * 50, min_pixels=10)
    assert ("hrda_kedro/hrda/crops.py", "_randint", "item") in reads
    assert ("hrda_kedro/hrda/uda/rcs.py", "<listcomp>", "nonzero") in reads or (
        "hrda_kedro/hrda/uda/rcs.py",
        "__init__",
        "nonzero",
    ) in reads
