"""One training stage: the source-only warmup (no UDA config) or one self-training round.

Per step, on the device and without host synchronisation (:meth:`Trainer.step`):

0. from the second step on, the EMA teacher update (official order: the teacher that
   makes step t's pseudo-labels has seen the student after t optimizer steps);
1. ``source_loss``: source HRDA crops -> multi-resolution forward -> HRDA loss (+ feature
   distance);
2. with self-training: ``teacher_pseudo_labels`` of the target crop (EMA teacher, or the
   materialized ones; on a CPU the EMA teacher's pass runs beside step 1, in a thread of
   its own: :mod:`hrda_kedro.hrda.training.teacher_thread`), ``mixed_target_loss``
   (ClassMix, strong augmentation, pixel-weighted HRDA loss) and, with MIC,
   ``masked_consistency_loss``;
3. ``optimizer_update``: AdamW step, lr schedule step.

Each part is a ``torch.profiler.record_function`` region (``ema``, ``source``,
``pseudo_labels``, ``mix``, ``mic``, ``update``; inside them ``forward``,
``teacher_forward`` and ``backward``), so a profiler shows where the step's time goes.
The loop around the step (resume, history, checkpoints) is
:mod:`hrda_kedro.hrda.training.loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.profiler import record_function

from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.networks.base import SegmentationNetwork
from hrda_kedro.hrda.training import loop, teacher_thread
from hrda_kedro.hrda.training.config import TrainingConfig
from hrda_kedro.hrda.training.devices import DeviceSetup
from hrda_kedro.hrda.training.distributed import (
    broadcast_buffers,
    gather_rank_states,
    no_sync,
    wrap_ddp,
)
from hrda_kedro.hrda.training.history import (
    History,
    OnLog,
    history_from_columns,
    history_to_columns,
)
from hrda_kedro.hrda.training.optim import optimizer_and_schedule
from hrda_kedro.hrda.training.photometric import photometric_distortion
from hrda_kedro.hrda.training.steps import StepLosses, Terms, optimizer_update, source_loss
from hrda_kedro.hrda.training.streams import StageData, source_stream, target_stream
from hrda_kedro.hrda.training.student import Student
from hrda_kedro.hrda.uda.augment import configured_augment
from hrda_kedro.hrda.uda.batches import CropBatch, CropSpec, CropStream
from hrda_kedro.hrda.uda.config import UDAConfig
from hrda_kedro.hrda.uda.ema import EMATeacher
from hrda_kedro.hrda.uda.feature_distance import ImageNetFeatureDistance
from hrda_kedro.hrda.uda.mic import masked_consistency_loss
from hrda_kedro.hrda.uda.mixed import mixed_target_loss
from hrda_kedro.hrda.uda.teacher import PseudoLabels, teacher_pseudo_labels


@dataclass
class StageResult:
    """A finished (or resumed-and-finished) stage: weights on the host and its history."""

    model: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor] | None
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0


def _no_pseudo_labels() -> PseudoLabels:
    raise AssertionError("a step without a target has no pseudo-labels")


class Trainer:
    """Runs one training stage; resumable from its own in-training checkpoint."""

    def __init__(
        self,
        model: HRDAModel,
        config: TrainingConfig,
        data: StageData,
        *,
        context_crop: tuple[int, int],
        hr_loss_weight: float,
        setup: DeviceSetup,
        seed: int,
        uda: UDAConfig | None = None,
        teacher_state: dict[str, torch.Tensor] | None = None,
        imagenet_network: SegmentationNetwork | None = None,
        stage: str = "train",
        rank: int = 0,
        world_size: int = 1,
        progress_bar: bool = True,
        on_log: OnLog | None = None,
    ) -> None:
        """``uda`` None trains source-only. ``context_crop`` is the HR context crop size; the
        detail crop is the model's. ``on_log(stage, rows)`` receives, on rank 0, the history
        rows added every ``log_every`` steps."""
        if uda is not None and data.target is None:
            raise ValueError("self-training needs a target dataset")
        self.config, self.setup = config, setup
        self.stage, self.rank, self.world_size = stage, rank, world_size
        self.progress_bar = progress_bar and rank == 0
        self.model = setup.place(model)
        self.student = Student(
            self.model, hr_loss_weight, setup, wrap_ddp(self.model, setup, world_size)
        )
        self.optimizer, self.scheduler = optimizer_and_schedule(
            self.model, config.optimizer, config.iterations
        )
        # Each rank draws its own batches; model init and dropout are seeded identically.
        self.data_generator = torch.Generator().manual_seed(seed * 1000 + rank)
        self.mix_generator = torch.Generator().manual_seed(seed * 1000 + 500 + rank)
        torch.manual_seed(seed)
        spec = CropSpec(context_crop, self.model.detail_hw, self.student.align, config.augment.flip)
        self.source_stream = source_stream(data, config, spec, self.data_generator)
        self.target_stream: CropStream | None = None
        self.teacher: EMATeacher | None = None
        self.distance: ImageNetFeatureDistance | None = None
        self.pseudo_labels: Callable[..., PseudoLabels] | None = None
        self.mixed: Callable[..., tuple[torch.Tensor, Terms]] | None = None
        self.mic: Callable[..., tuple[torch.Tensor, Terms]] | None = None
        # Source-only, the augment settings apply to the source crops (the warmup has no other
        # images to augment); with self-training they apply to the mixed images, the source
        # crops stay clean (official).
        self.source_augment: Callable[[torch.Tensor], torch.Tensor] | None = None
        if uda is not None:
            assert data.target is not None
            self.target_stream = target_stream(data.target, config, spec, self.data_generator)
            self._bind_uda(uda, teacher_state, imagenet_network)
        elif config.augment.color_jitter or config.augment.blur:
            augment = configured_augment(config.augment)
            self.source_augment = partial(augment, generator=self.mix_generator)
        self.grad_clip = config.optimizer.grad_clip
        self.iteration = 0
        self.history = History(
            stage, config.iterations, reports=rank == 0, on_log=on_log if rank == 0 else None
        )

    def _bind_uda(
        self,
        uda: UDAConfig,
        teacher_state: dict[str, torch.Tensor] | None,
        imagenet_network: SegmentationNetwork | None,
    ) -> None:
        """The self-training parts of the step, their settings bound: the online EMA teacher
        (none with materialized pseudo-labels), the mixed loss, MIC and the feature distance
        when enabled."""
        if uda.pseudo_labels.source == "online":
            self.teacher = EMATeacher(self.model, alpha=uda.ema_alpha)
            if teacher_state is not None:
                self.teacher.model.load_state_dict(teacher_state)
        setup, generator = self.setup, self.mix_generator
        augment = configured_augment(self.config.augment)
        self.pseudo_labels = partial(teacher_pseudo_labels, config=uda.pseudo_labels, setup=setup)
        self.mixed = partial(
            mixed_target_loss, classmix=uda.classmix, augment=augment, generator=generator
        )
        if uda.mic.enabled:
            self.mic = partial(
                masked_consistency_loss, config=uda.mic, generator=generator, augment=augment
            )
        if imagenet_network is not None and uda.feature_distance.enabled:
            self.distance = ImageNetFeatureDistance(
                imagenet_network.to(setup.device),
                scale=self.model.scale,
                weight=uda.feature_distance.weight,
                autocast=setup.autocast,
            )

    def draw(self) -> tuple[CropBatch, CropBatch | None]:
        """The next source and target batches (the loop draws one batch ahead, in a thread)."""
        source = self.source_stream.next_batch()
        target = self.target_stream.next_batch() if self.target_stream else None
        if self.setup.device.type == "cuda":  # page-locked: non_blocking copies overlap
            source = source.pinned()
            target = target.pinned() if target is not None else None
        return source, target

    def _distorted(self, images: torch.Tensor) -> torch.Tensor:
        """The source crops, photometrically distorted when configured: on the device, with
        the step's generator (the batch thread draws none of the step's random numbers)."""
        if not self.config.augment.photometric_distortion:
            return images
        on_device = images.to(self.setup.device, non_blocking=True)
        return photometric_distortion(on_device, self.mix_generator)

    def step(self, source: CropBatch, target: CropBatch | None) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached loss terms (still on the device)."""
        student, setup = self.student, self.setup
        if self.teacher is not None and self.iteration > 0:
            with record_function("ema"):
                if self.world_size > 1:
                    broadcast_buffers(self.model)
                self.teacher.update(self.model, self.iteration)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses = StepLosses()
        src_images = setup.images(self._distorted(source.images))
        src_labels = setup.labels(source.labels)
        tgt_images = setup.images(target.images) if target is not None else None
        # With a target, the source gradients are all-reduced with the last target pass's.
        with (
            self._pseudo_labels_beside(target, tgt_images) as pseudo_labels,
            record_function("source"),
            no_sync(student.forward_train, target is not None),
        ):
            boxes = source.detail_boxes
            losses.backward(
                *source_loss(
                    student, src_images, src_labels, boxes, self.distance, self.source_augment
                )
            )
        if target is not None and self.pseudo_labels is not None and self.mixed is not None:
            assert tgt_images is not None
            pseudo = pseudo_labels()
            with record_function("mix"), no_sync(student.forward_train, self.mic is not None):
                mixed = (src_images, src_labels, tgt_images, target.detail_boxes, pseudo)
                losses.backward(*self.mixed(student, *mixed))
            if self.mic is not None:
                with record_function("mic"):
                    losses.backward(*self.mic(student, tgt_images, *pseudo, target.image_sizes))
        with record_function("update"):
            optimizer_update(self.model, self.optimizer, self.scheduler, self.grad_clip)
        return {**losses.terms, "loss": losses.total()}

    def _pseudo_labels_beside(
        self, target: CropBatch | None, images: torch.Tensor | None
    ) -> AbstractContextManager[Callable[[], PseudoLabels]]:
        """The target crops' pseudo-labels, started next to the source pass when the EMA
        teacher predicts them on a CPU with a teacher thread (the same computation, each
        pass on its share of the threads), else made when asked for, after it."""
        if target is None or images is None or self.pseudo_labels is None:
            return nullcontext(_no_pseudo_labels)
        make = partial(self._make_pseudo_labels, target, images)
        # A single-resolution teacher (LR-only, naive HR) predicts one crop per image, a
        # third of the source pass's work or less: beside it, its thread idles while the
        # source pass runs on half the threads (steps 1.07x to 1.17x slower, measured), so
        # only the sliding-window teacher runs beside (docs/performance.md).
        concurrent = (
            self.setup.teacher_thread
            and self.setup.device.type == "cpu"
            and self.model.mode != "lr_only"
        )
        return teacher_thread.beside(make, concurrent and self.teacher is not None)

    def _make_pseudo_labels(self, target: CropBatch, images: torch.Tensor) -> PseudoLabels:
        assert self.pseudo_labels is not None
        with record_function("pseudo_labels"):
            return self.pseudo_labels(self.teacher, target, images)

    # ------------------------------------------------------------------ state

    def state_dict(self, data_state: torch.Tensor) -> dict[str, Any]:
        """The resumable state; data parallel, a collective call that every rank must make."""
        generators = {"data_generator": data_state, "mix_generator": self.mix_generator.get_state()}
        state: dict[str, Any] = {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **generators,
            "torch_rng": torch.get_rng_state(),
            "history": history_to_columns(self.history.rows),
        }
        if torch.cuda.is_available() and self.setup.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.setup.device)
        teacher = self.teacher.model if self.teacher is not None else None
        if teacher is not None:
            state["teacher"] = teacher.state_dict()
        if self.world_size > 1:
            state["ranks"] = gather_rank_states(
                generators, self.world_size, teacher, self.stage, self.iteration
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        own = state["ranks"][self.rank] if self.world_size > 1 else state
        self.data_generator.set_state(own["data_generator"])
        self.mix_generator.set_state(own["mix_generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.setup.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.setup.device)
        if self.teacher is not None and "teacher" in state:
            self.teacher.model.load_state_dict(state["teacher"])
        self.history.rows = history_from_columns(state["history"])

    def run(
        self,
        checkpoint_path: Path | None = None,
        fingerprint: str = "",
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> StageResult:
        """Train to ``config.iterations``, resuming from ``checkpoint_path`` if it matches
        (:func:`hrda_kedro.hrda.training.loop.train`)."""
        loop.train(self, checkpoint_path, fingerprint, on_checkpoint)
        return self.result()

    def result(self) -> StageResult:
        return StageResult(
            model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            teacher=(
                {k: v.detach().cpu() for k, v in self.teacher.model.state_dict().items()}
                if self.teacher is not None
                else None
            ),
            history=list(self.history.rows),
            iterations=self.iteration,
        )
