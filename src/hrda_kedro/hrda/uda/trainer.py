"""The HRDA training loop: supervised source steps, optionally with DAFormer self-training.

One :class:`Trainer` runs one stage (the source-only warmup or one self-training round).
Per step, on the device and without host synchronisation:

0. from the second step on, the EMA teacher update (official order: the teacher that
   makes step t's pseudo-labels has seen the student after t optimizer steps);
1. source HRDA crops -> multi-resolution forward -> HRDA loss (+ feature distance);
2. with self-training: the EMA teacher predicts the target context crop (LR pass plus
   batched HR sliding windows), giving pseudo-labels and their confidence weight (or they
   are read from materialized files: ``pseudo_label_source="offline"``); ClassMix pastes
   source classes onto the target crop, strong augmentation follows, and the student
   trains on the mix with the pixel-weighted HRDA loss;
3. AdamW step, lr schedule step.

Loss values stay on the device and are read back once every ``log_every`` steps, which is
also when non-finite losses are detected; checkpoints are written only after such a
check passed, so the last checkpoint on disk is always a good one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from hrda_kedro.hrda import normalize
from hrda_kedro.hrda.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hrda_kedro.hrda.losses import hrda_loss
from hrda_kedro.hrda.model import HRDAModel
from hrda_kedro.hrda.model_config import HRDAConfig
from hrda_kedro.hrda.networks.base import SegmentationNetwork
from hrda_kedro.hrda.uda.augment import strong_augment
from hrda_kedro.hrda.uda.batches import (
    CropBatch,
    CropSpec,
    CropStream,
    Prefetcher,
    border_margin_weights,
)
from hrda_kedro.hrda.uda.classmix import classmix_masks, mix_batch
from hrda_kedro.hrda.uda.ema import EMATeacher
from hrda_kedro.hrda.uda.feature_distance import feature_distance_loss
from hrda_kedro.hrda.uda.mic import MaskingConfig, masked_consistency_loss
from hrda_kedro.hrda.uda.optim import build_optimizer, build_scheduler
from hrda_kedro.hrda.uda.pseudo_labels import confidence_weights, make_pseudo_labels
from hrda_kedro.hrda.uda.rcs import RareClassSampler, scale_min_pixels
from hrda_kedro.params import SelfTrainingParams, TrainingParams

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the iteration and the term."""


@dataclass
class DeviceSetup:
    """Where the step runs and with which numeric format."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


@dataclass
class StageResult:
    model: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor] | None
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0


class Trainer:
    """Runs one training stage; resumable from its own in-training checkpoint."""

    def __init__(
        self,
        model: HRDAModel,
        params: TrainingParams,
        hrda: HRDAConfig,
        *,
        source: Dataset,
        setup: DeviceSetup,
        seed: int,
        target: Dataset | None = None,
        source_class_pixel_counts: np.ndarray | None = None,
        teacher_state: dict[str, torch.Tensor] | None = None,
        imagenet_network: SegmentationNetwork | None = None,
        stage: str = "train",
        rank: int = 0,
        world_size: int = 1,
        progress_bar: bool = True,
        on_log: Callable[[str, list[dict[str, float]]], None] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        """``on_log(stage, rows)`` receives, on rank 0, the history rows added every
        ``log_every`` steps (experiment trackers hook in here); ``class_names`` name the
        classes in the rare-class sampling log."""
        self.class_names = class_names
        self.params = params
        self.hr_loss_weight = hrda.hr_loss_weight
        self.uda = isinstance(params, SelfTrainingParams)
        self.setup = setup
        self.stage = stage
        self.rank = rank
        self.world_size = world_size
        self.progress_bar = progress_bar and rank == 0
        self.on_log = on_log if rank == 0 else None
        self.model = model.to(setup.device)
        if setup.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # HRDAModel.forward is the training pass, so DDP can wrap the model itself.
        self.forward_train: nn.Module = self.model
        if world_size > 1:
            self.forward_train = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[setup.device.index] if setup.device.type == "cuda" else None,
                # Every mode but "hrda" leaves the attention head without gradients.
                find_unused_parameters=self.model.mode != "hrda",
            )
        self.optimizer = build_optimizer(
            self.model,
            lr=params.optimizer.lr,
            betas=params.optimizer.betas,
            weight_decay=params.optimizer.weight_decay,
            head_lr_mult=params.optimizer.head_lr_mult,
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            warmup_iters=min(params.optimizer.warmup_iters, max(params.iterations, 1)),
            max_iters=max(params.iterations, 1),
            power=params.optimizer.poly_power,
        )
        # Each rank draws its own batches; model init and dropout are seeded identically.
        self.data_generator = torch.Generator().manual_seed(seed * 1000 + rank)
        self.mix_generator = torch.Generator().manual_seed(seed * 1000 + 500 + rank)
        torch.manual_seed(seed)

        spec = CropSpec(
            context_hw=hrda.context_crop,
            detail_hw=hrda.detail_crop,
            align=model.scale * model.output_stride,
            flip=params.augment.flip,
        )
        self.source_stream = self._make_source_stream(
            source,
            dataclasses.replace(spec, cat_max_ratio=params.cat_max_ratio),
            source_class_pixel_counts,
        )
        self.target_stream: CropStream | None = None
        self.teacher: EMATeacher | None = None
        self.masking: MaskingConfig | None = None
        self.imagenet_network = imagenet_network
        if self.uda:
            assert isinstance(params, SelfTrainingParams)
            if target is None:
                raise ValueError("self-training needs a target dataset")
            self.target_stream = CropStream(
                target,
                params.target_batch_size,
                spec,
                self.data_generator,
                decode_threads=params.decode_threads,
            )
            if params.pseudo_labels.source == "online":
                self.teacher = EMATeacher(self.model, alpha=params.ema_alpha)
                if teacher_state is not None:
                    self.teacher.model.load_state_dict(teacher_state)
            mic = params.mic
            self.masking = (
                MaskingConfig(
                    block_size=mic.mask_block_size,
                    reference_hw=mic.mask_block_reference_size,
                    ratio=mic.mask_ratio,
                    loss_weight=mic.loss_weight,
                    augment=mic.augment,
                )
                if mic.enabled
                else None
            )
            if imagenet_network is not None:
                self.imagenet_network = imagenet_network.to(setup.device).eval()
                self.imagenet_network.requires_grad_(False)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self._reported = 0  # history rows already logged and passed to on_log
        self._pending_lrs: list[float] = []  # lr of each step not yet written to history

    # ------------------------------------------------------------------ data

    def _make_source_stream(
        self, source: Dataset, spec: CropSpec, counts: np.ndarray | None
    ) -> CropStream:
        rcs_params = self.params.rare_class_sampling
        sampler = None
        min_crop = None
        if rcs_params.enabled and counts is not None:
            first = source[0]["image"]
            image_hw = tuple(first.shape[-2:])
            min_pixels = (
                rcs_params.min_pixels
                if rcs_params.reference_size is None
                else scale_min_pixels(image_hw, rcs_params.min_pixels, rcs_params.reference_size)
            )
            sampler = RareClassSampler(
                torch.as_tensor(np.asarray(counts)),
                temperature=rcs_params.temperature,
                min_pixels=min_pixels,
                generator=self.data_generator,
                class_names=self.class_names,
            )
            if rcs_params.min_crop_ratio > 0:  # official: 0 keeps the first crop
                min_crop = min_pixels * rcs_params.min_crop_ratio
        return CropStream(
            source,
            self.params.source_batch_size,
            spec,
            self.data_generator,
            rare_class_sampler=sampler,
            rcs_min_crop_pixels=min_crop,
            decode_threads=self.params.decode_threads,
        )

    def _draw(self) -> tuple[CropBatch, CropBatch | None]:
        source = self.source_stream.next_batch()
        target = self.target_stream.next_batch() if self.target_stream is not None else None
        if self.setup.device.type == "cuda":  # page-locked, so non_blocking copies overlap
            source = source.pinned()
            target = target.pinned() if target is not None else None
        return source, target

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = normalize(images.to(self.setup.device, non_blocking=True))
        if self.setup.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    # ------------------------------------------------------------------ step

    def _ddp_no_sync(self) -> Any:
        no_sync = getattr(self.forward_train, "no_sync", None)
        return no_sync() if no_sync is not None else nullcontext()

    def step(self, source: CropBatch, target: CropBatch | None) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached loss terms (still on the device)."""
        params = self.params
        dev = self.setup.device
        hr_weight = self.hr_loss_weight
        if self.teacher is not None and self.iteration > 0:
            # Official schedule: at the start of step t, before its pseudo-labels, the
            # teacher takes the student's weights after t optimizer steps with
            # alpha_t = min(1 - 1/(t+1), alpha); at t = 0 it is the student's initial copy.
            if self.world_size > 1:
                self._broadcast_buffers()
            self.teacher.update(self.model, self.iteration)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}

        src_images = self._to_device(source.images)
        src_labels = source.labels.to(dev, non_blocking=True)
        # Gradients of the source pass are all-reduced together with the mix pass.
        sync_ctx = self._ddp_no_sync() if target is not None else nullcontext()
        with sync_ctx:
            with self.setup.autocast():
                out = self.forward_train(src_images, source.detail_boxes)
            loss, src_terms = hrda_loss(out, src_labels, source.detail_boxes, None, hr_weight)
            terms.update({f"source_{k}": v for k, v in src_terms.items()})
            if self.uda and self.imagenet_network is not None and params.feature_distance.enabled:
                with torch.no_grad(), self.setup.autocast():
                    small = F.interpolate(
                        src_images,
                        scale_factor=1 / self.model.scale,
                        mode="bilinear",
                        align_corners=False,
                    )
                    imnet_features = self.imagenet_network.extract(small)
                fd = feature_distance_loss(
                    out.context_features[-1].float(),
                    imnet_features[-1].float(),
                    src_labels,
                    weight=params.feature_distance.weight,
                )
                loss = loss + fd
                terms["feature_distance"] = fd.detach()
            loss.backward()
        total = loss.detach()

        if target is not None:
            mix_loss, mix_terms = self._mix_step(source, src_images, src_labels, target)
            total = total + mix_loss
            terms.update(mix_terms)

        if params.optimizer.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), params.optimizer.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        terms["loss"] = total
        return terms

    def _broadcast_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics now, not at the next forward as DDP
        does: the teacher copies the student's buffers, and each rank's own batch moved them."""
        buffers = list(self.model.buffers())
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

    def _mix_step(
        self,
        source: CropBatch,
        src_images: torch.Tensor,
        src_labels: torch.Tensor,
        target: CropBatch,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        params = self.params
        assert isinstance(params, SelfTrainingParams)
        dev = self.setup.device
        tgt_images = self._to_device(target.images)
        crop_hw = tgt_images.shape[-2:]
        if self.teacher is not None:
            with torch.no_grad(), self.setup.autocast():
                teacher_logits = self.teacher.model.predict_window(tgt_images).fused
            teacher_logits = F.interpolate(
                teacher_logits.float(), size=crop_hw, mode="bilinear", align_corners=False
            )
            pseudo_labels, pseudo_weights = make_pseudo_labels(
                teacher_logits,
                threshold=params.pseudo_labels.threshold,
                weight_mode=params.pseudo_labels.weight,
            )
        else:
            if target.labels is None or target.weights is None:
                raise ValueError("offline pseudo-labels were requested but none were materialized")
            pseudo_labels = target.labels.to(dev, non_blocking=True)
            pseudo_weights = confidence_weights(
                target.weights.to(dev, non_blocking=True),
                params.pseudo_labels.threshold,
                params.pseudo_labels.weight,
            )
        # The confident share is over the whole crop; the margins are zeroed after it, each
        # image's scaled to its own size (official order; ours: per image, per-image scale).
        margins = border_margin_weights(
            target, params.pseudo_labels.margins, params.pseudo_labels.margins_reference_size
        )
        pseudo_weights = pseudo_weights * margins.to(dev, non_blocking=True)

        n = tgt_images.shape[0]
        if n != src_images.shape[0]:  # pair target i with source i mod B_s
            pair = torch.arange(n, device=dev) % src_images.shape[0]
            src_images, src_labels = src_images[pair], src_labels[pair]
        if params.classmix:
            masks = classmix_masks(src_labels, self.mix_generator)
            images, labels, weights = mix_batch(
                masks, src_images, tgt_images, src_labels, pseudo_labels, pseudo_weights
            )
        else:
            images, labels, weights = tgt_images, pseudo_labels, pseudo_weights
        images = self._strong_augment(images, self.mix_generator)
        if self.setup.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # With MIC, gradients are all-reduced once, with the masked pass's backward.
        sync_ctx = self._ddp_no_sync() if self.masking is not None else nullcontext()
        with sync_ctx:
            with self.setup.autocast():
                out = self.forward_train(images, target.detail_boxes)
            loss, mix_terms = hrda_loss(
                out, labels, target.detail_boxes, weights, self.hr_loss_weight
            )
            loss.backward()
        terms = {f"mix_{k}": v for k, v in mix_terms.items()}
        terms["pseudo_weight"] = pseudo_weights.detach().mean()
        total = loss.detach()
        if self.masking is not None:
            mic_loss, mic_terms = masked_consistency_loss(
                self.forward_train,
                tgt_images,
                pseudo_labels,
                pseudo_weights,
                config=self.masking,
                image_sizes=target.image_sizes,
                detail_hw=self.model.detail_hw,
                align=self.model.scale * self.model.output_stride,
                hr_loss_weight=self.hr_loss_weight,
                generator=self.mix_generator,
                augment=self._strong_augment,
                autocast=self.setup.autocast,
            )
            mic_loss.backward()
            terms.update({f"mic_{k}": v for k, v in mic_terms.items()})
            terms["mic"] = mic_loss.detach()
            total = total + terms["mic"]
        return total, terms

    def _strong_augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DACS colour jitter and blur with this stage's settings (mixed and MIC images)."""
        aug = self.params.augment
        return strong_augment(
            images,
            generator,
            color_jitter=aug.color_jitter,
            jitter_p=aug.color_jitter_p,
            jitter_strength=aug.color_jitter_strength,
            blur=aug.blur,
            blur_p=aug.blur_p,
        )

    # ------------------------------------------------------------------ state

    def state_dict(self, data_state: torch.Tensor) -> dict[str, Any]:
        """The resumable state; data parallel, a collective call that every rank must make."""
        state: dict[str, Any] = {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_generator": data_state,
            "mix_generator": self.mix_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": history_to_columns(self.history),
        }
        if torch.cuda.is_available() and self.setup.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.setup.device)
        if self.teacher is not None:
            state["teacher"] = self.teacher.model.state_dict()
        if self.world_size > 1:
            state["ranks"] = self._gather_rank_states(data_state)
        return state

    def _gather_rank_states(self, data_state: torch.Tensor) -> list[dict[str, Any]]:
        """Every rank's generator states (ranks draw their own batches, so each resumes its
        own sequence) and teacher digest: a diverged teacher stops the run before a save."""
        own = {
            "data_generator": data_state,
            "mix_generator": self.mix_generator.get_state(),
            "teacher_digest": (
                "" if self.teacher is None else state_digest(self.teacher.model.state_dict())
            ),
        }
        ranks: list[Any] = [None] * self.world_size
        dist.all_gather_object(ranks, own)
        digests = [r["teacher_digest"] for r in ranks]
        if len(set(digests)) > 1:
            raise RuntimeError(
                f"{self.stage}: EMA teachers differ across ranks at iteration "
                f"{self.iteration}: {digests}"
            )
        return ranks

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
        self.history = history_from_columns(state["history"])

    # ------------------------------------------------------------------ loop

    def run(
        self,
        checkpoint_path: Path | None = None,
        fingerprint: str = "",
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> StageResult:
        """Train to ``params.iterations``, resuming from ``checkpoint_path`` if it matches."""
        params = self.params
        if checkpoint_path is not None and checkpoint_path.is_file():
            state = load_checkpoint(checkpoint_path)
            if state.get("fingerprint") == fingerprint:
                try:
                    self.load_state_dict(state)
                except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
                    what = f"no {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
                    raise CheckpointError(
                        f"{checkpoint_path}: cannot resume from this in-training checkpoint "
                        f"({type(err).__name__}: {what}); expected a complete checkpoint written "
                        "by hrda-kedro: move it away to train this stage afresh"
                    ) from err
                logger.info(
                    "%s: resuming at iteration %d from %s",
                    self.stage,
                    self.iteration,
                    checkpoint_path,
                )
            else:
                logger.info(
                    "%s: %s was trained on other %s; starting afresh",
                    self.stage,
                    checkpoint_path,
                    _changed_parts(str(state.get("fingerprint", "")), fingerprint),
                )
        self._reported = len(self.history)  # a resumed run's rows were reported before
        if self.iteration >= params.iterations:
            return self._result()

        prefetch = Prefetcher(self._draw, depth=2)
        bar = tqdm(
            total=params.iterations,
            initial=self.iteration,
            desc=self.stage,
            disable=not self.progress_bar,
            dynamic_ncols=True,
        )
        pending: list[dict[str, torch.Tensor]] = []
        self._pending_lrs = []
        data_state = self.data_generator.get_state()
        tic = time.perf_counter()
        try:
            while self.iteration < params.iterations:
                source, target = prefetch.get()
                data_state = (target or source).generator_state
                # The lr this step uses (a host-side float: reading it costs no sync).
                self._pending_lrs.append(self.optimizer.param_groups[0]["lr"])
                pending.append(self.step(source, target))
                self.iteration += 1
                done = self.iteration >= params.iterations
                if self.iteration % params.log_every == 0 or done:
                    elapsed = time.perf_counter() - tic
                    self._flush(pending, elapsed)
                    bar.update(len(pending))
                    bar.set_postfix(self._postfix())
                    self._report()
                    pending = []
                    tic = time.perf_counter()
                if checkpoint_path is not None and (
                    self.iteration % params.checkpoint_every == 0 or done
                ):
                    if pending:  # a checkpoint is written only after a finite-loss check
                        self._flush(pending, time.perf_counter() - tic)
                        bar.update(len(pending))
                        pending = []
                        tic = time.perf_counter()
                    state = self.state_dict(data_state)  # every rank: it gathers rank states
                    if self.rank == 0:
                        save_checkpoint(checkpoint_path, {"fingerprint": fingerprint, **state})
                        if on_checkpoint is not None:
                            on_checkpoint(self.iteration)
        finally:
            prefetch.close()
            bar.close()
        return self._result()

    def _flush(self, pending: list[dict[str, torch.Tensor]], elapsed: float) -> None:
        """Read the pending steps' losses back in one transfer; stop on a non-finite one."""
        if not pending:
            return
        names = sorted(pending[0])
        values = torch.stack([torch.stack([p[n].float() for n in names]) for p in pending]).cpu()
        first = self.iteration - len(pending) + 1
        bad = (~torch.isfinite(values)).nonzero().tolist()
        if bad:
            # Name the term that went bad, not the total it made non-finite as well.
            step = bad[0][0]
            terms = [t for s, t in bad if s == step]
            term = next((t for t in terms if names[t] != "loss"), terms[0])
            raise NonFiniteLossError(
                f"{self.stage}: loss term {names[term]!r} is {values[step, term].item()} at "
                f"iteration {first + step}; stopped, the last checkpoint on disk is from before it"
            )
        lrs, self._pending_lrs = self._pending_lrs, []
        per_step = elapsed / len(pending)
        for i, row in enumerate(values.tolist()):
            record = {"iteration": float(first + i), "lr": lrs[i], "seconds": per_step}
            record.update(zip(names, row, strict=True))
            self.history.append(record)

    def _report(self) -> None:
        """A plain log line on rank 0 (logs redirected to a file or a scheduler show the
        progress the bar shows on a terminal), then the rows added since to ``on_log``."""
        rows, self._reported = self.history[self._reported :], len(self.history)
        if self.rank != 0 or not rows:
            return
        last = rows[-1]
        per_step = max(last["seconds"], 1e-9)
        remaining = self.params.iterations - self.iteration
        terms = " ".join(
            f"{k} {last[k]:.4f}"
            for k in ("loss", "source_fused", "mix_fused", "feature_distance", "pseudo_weight")
            if k in last
        )
        logger.info(
            "%s: %d/%d %s lr %.2e | %.2f it/s, ETA %s",
            self.stage,
            self.iteration,
            self.params.iterations,
            terms,
            last["lr"],
            1.0 / per_step,
            _duration(remaining * per_step),
        )
        if self.on_log is not None:
            self.on_log(self.stage, rows)

    def _postfix(self) -> dict[str, str]:
        last = self.history[-1]
        shown = {
            k: f"{v:.3f}"
            for k, v in last.items()
            if k in ("loss", "source_fused", "mix_fused", "pseudo_weight")
        }
        shown["lr"] = f"{last['lr']:.2e}"
        shown["it/s"] = f"{1.0 / max(last['seconds'], 1e-9):.2f}"
        return shown

    def _result(self) -> StageResult:
        return StageResult(
            model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            teacher=(
                {k: v.detach().cpu() for k, v in self.teacher.model.state_dict().items()}
                if self.teacher is not None
                else None
            ),
            history=list(self.history),
            iterations=self.iteration,
        )


def _duration(seconds: float) -> str:
    """``h:mm:ss``, as the progress bar shows its ETA."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the exact bytes of every tensor: proves weights identical, not just close."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def history_to_columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Column layout: plain lists survive ``weights_only`` loading."""
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    return {k: [float(row.get(k, float("nan"))) for row in rows] for k in keys}


def history_from_columns(columns: dict[str, list[float]]) -> list[dict[str, float]]:
    if not columns:
        return []
    length = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items()} for i in range(length)]


def _changed_parts(old: str, new: str) -> str:
    """Which named parts of two ``name=digest ...`` fingerprints differ, for the log."""
    before = dict(part.partition("=")[::2] for part in old.split())
    after = dict(part.partition("=")[::2] for part in new.split())
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return " and ".join(changed) if changed and before else "inputs or parameters"
