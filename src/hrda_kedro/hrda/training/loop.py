"""The loop around a stage's steps: resume from the in-training checkpoint, prefetch
batches, read the losses back every ``log_every`` steps, write a checkpoint every
``checkpoint_every`` steps.

Each phase is a ``torch.profiler.record_function`` region (``data_wait``, ``step``,
``flush``, ``checkpoint``; the step's own regions are listed in
:mod:`hrda_kedro.hrda.training.trainer`), so a profiler shows where a stage's time goes.

Loss values stay on the device and are read back once every ``log_every`` steps, which is
also when non-finite losses are detected; checkpoints are written only after such a
check passed, so the last checkpoint on disk is always a good one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.profiler import record_function
from tqdm.auto import tqdm

from hrda_kedro.hrda.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.hrda.training.history import History
from hrda_kedro.hrda.uda.batches import CropBatch, Prefetcher

logger = logging.getLogger(__name__)


class Trainer(Protocol):
    """What the loop drives (:class:`hrda_kedro.hrda.training.trainer.Trainer`): an
    interface, so that the loop does not import the class that calls it."""

    config: TrainingConfig
    history: History
    iteration: int
    stage: str
    rank: int
    progress_bar: bool
    data_generator: torch.Generator
    optimizer: torch.optim.Optimizer

    def draw(self) -> tuple[CropBatch, CropBatch | None]: ...

    def step(self, source: CropBatch, target: CropBatch | None) -> dict[str, torch.Tensor]: ...

    def state_dict(self, data_state: torch.Tensor) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def train(
    trainer: Trainer,
    checkpoint_path: Path | None,
    fingerprint: str,
    on_checkpoint: Callable[[int], None] | None = None,
) -> None:
    """Train to the stage's iterations, resuming from ``checkpoint_path`` if its
    ``fingerprint`` matches; ``on_checkpoint(iteration)`` follows each checkpoint written."""
    if checkpoint_path is not None and checkpoint_path.is_file():
        resume(trainer, checkpoint_path, fingerprint)
    config, history = trainer.config, trainer.history
    if trainer.iteration >= config.iterations:
        return
    prefetch = Prefetcher(trainer.draw, depth=2)
    bar = tqdm(
        total=config.iterations,
        initial=trainer.iteration,
        desc=trainer.stage,
        disable=not trainer.progress_bar,
        dynamic_ncols=True,
    )
    history.start(history.rows)  # a resumed run's rows were reported before
    data_state = trainer.data_generator.get_state()
    try:
        while trainer.iteration < config.iterations:
            with record_function("data_wait"):
                source, target = prefetch.get()
            data_state = (target or source).generator_state
            lr = trainer.optimizer.param_groups[0]["lr"]  # this step's (a host float)
            with record_function("step"):
                history.add(trainer.step(source, target), lr)
            trainer.iteration += 1
            done = trainer.iteration >= config.iterations
            log = trainer.iteration % config.log_every == 0 or done
            save = checkpoint_path is not None and (
                trainer.iteration % config.checkpoint_every == 0 or done
            )
            if log or save:  # a checkpoint is written only after a finite-loss check
                with record_function("flush"):
                    bar.update(history.flush(trainer.iteration))
            if log:
                bar.set_postfix(history.postfix())
                history.report(trainer.iteration)
            if save:
                assert checkpoint_path is not None
                with record_function("checkpoint"):
                    state = trainer.state_dict(data_state)  # every rank: gathers rank states
                    if trainer.rank == 0:
                        save_checkpoint(checkpoint_path, {"fingerprint": fingerprint, **state})
                if trainer.rank == 0 and on_checkpoint is not None:
                    on_checkpoint(trainer.iteration)
    finally:
        prefetch.close()
        bar.close()


def resume(trainer: Trainer, checkpoint_path: Path, fingerprint: str) -> None:
    """Load the in-training checkpoint if it was written for this ``fingerprint``."""
    state = load_checkpoint(checkpoint_path)
    if state.get("fingerprint") != fingerprint:
        logger.info(
            "%s: %s was trained on other %s; starting afresh",
            trainer.stage,
            checkpoint_path,
            _changed_parts(str(state.get("fingerprint", "")), fingerprint),
        )
        return
    try:
        trainer.load_state_dict(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        what = f"no {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
        raise CheckpointError(
            f"{checkpoint_path}: cannot resume from this in-training checkpoint "
            f"({type(err).__name__}: {what}); expected a complete checkpoint written "
            "by hrda-kedro: move it away to train this stage afresh"
        ) from err
    logger.info(
        "%s: resuming at iteration %d from %s", trainer.stage, trainer.iteration, checkpoint_path
    )


def _changed_parts(old: str, new: str) -> str:
    """Which named parts of two ``name=digest ...`` fingerprints differ, for the log."""
    before = dict(part.partition("=")[::2] for part in old.split())
    after = dict(part.partition("=")[::2] for part in new.split())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return " and ".join(changed) if changed and before else "inputs or parameters"
