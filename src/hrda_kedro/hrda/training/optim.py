"""AdamW with DAFormer's parameter groups and the warmup + polynomial learning-rate schedule.

The pretrained encoder is fine-tuned gently while the randomly initialised heads learn
ten times faster; weight decay is kept off parameters where shrinking towards 0 only
hurts (norm scales, biases, positional convolutions).

Parameter rules:

- **encoder vs head**: a parameter is an encoder parameter when its name equals or starts
  with one of ``encoder_prefixes`` followed by ``.``; every other parameter (decoder head,
  scale-attention head, ...) gets ``lr * head_lr_mult``.
- **no weight decay**, by ``no_decay``:

  - ``official``: the HRDA / DAFormer configs' mmcv ``custom_keys`` (``head``: lr x 10;
    ``pos_block`` and ``norm``: no decay; the first key that matches wins, longest first,
    so ``head`` before ``norm``): encoder parameters whose name contains ``norm`` or
    ``pos_block``; every head parameter, biases and BatchNorm included, and the encoder's
    biases and depthwise convolutions decay. The paper recipes'.
  - ``norms_biases_positional`` (conf/base's): ``param.ndim <= 1`` (biases, norm scales,
    LayerScale) or any dot-separated part of the name containing ``norm`` (``norm1``,
    ``layer_norm``, ``batchnorm``), starting with ``pos`` (``pos_block``, ``pos_embed``,
    ``position_embeddings``) or being ``dwconv`` (MiT's Mix-FFN 3x3 depthwise
    convolution, the implicit positional encoding), in the encoder and the heads alike.

- parameters with ``requires_grad=False`` are left out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from hrda_kedro.hrda.training.config import OptimizerConfig

logger = logging.getLogger(__name__)


def is_encoder_parameter(name: str, encoder_prefixes: Sequence[str]) -> bool:
    """True when ``name`` lies under one of the module paths ``encoder_prefixes``."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in encoder_prefixes)


def uses_weight_decay(
    name: str, parameter: nn.Parameter, rule: str = "norms_biases_positional", head: bool = False
) -> bool:
    """Whether ``name`` decays under ``rule`` (see module docs); ``head``: a head parameter."""
    if rule == "official":
        return head or not ("norm" in name or "pos_block" in name)
    if parameter.ndim <= 1:
        return False
    parts = name.split(".")
    return not any("norm" in part or part.startswith("pos") or part == "dwconv" for part in parts)


def build_optimizer(
    model: nn.Module,
    *,
    lr: float = 6e-5,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.01,
    head_lr_mult: float = 10.0,
    encoder_prefixes: Sequence[str] = ("network.encoder",),
    no_decay: str = "norms_biases_positional",
) -> AdamW:
    """AdamW over up to four groups: {encoder, head} x {decay, no decay}.

    Each group carries a ``name`` key (``"encoder"``, ``"encoder_no_decay"``, ``"head"``,
    ``"head_no_decay"``) for logging. Raises ``ValueError`` when no parameter matches
    ``encoder_prefixes``, which almost always means a wrong prefix.
    """
    groups: dict[str, list[nn.Parameter]] = {
        "encoder": [],
        "encoder_no_decay": [],
        "head": [],
        "head_no_decay": [],
    }
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "encoder" if is_encoder_parameter(name, encoder_prefixes) else "head"
        decays = uses_weight_decay(name, parameter, no_decay, head=part == "head")
        key = part if decays else f"{part}_no_decay"
        groups[key].append(parameter)
    if not groups["encoder"] and not groups["encoder_no_decay"]:
        raise ValueError(
            f"encoder_prefixes={tuple(encoder_prefixes)} match no trainable parameter of the model"
        )
    param_groups = [
        {
            "name": key,
            "params": params,
            "lr": lr * (1.0 if key.startswith("encoder") else head_lr_mult),
            "weight_decay": weight_decay if not key.endswith("no_decay") else 0.0,
        }
        for key, params in groups.items()
        if params
    ]
    for group in param_groups:
        logger.info(
            "optimizer group %s: %d tensors, %d parameters, lr %.3g, weight decay %.3g",
            group["name"],
            len(group["params"]),
            sum(p.numel() for p in group["params"]),
            group["lr"],
            group["weight_decay"],
        )
    return AdamW(
        param_groups,
        lr=lr,
        betas=betas,
        weight_decay=weight_decay,
        fused=_fused_kernel_applies(model),
    )


def _fused_kernel_applies(model: nn.Module) -> bool:
    """Whether torch's fused AdamW kernel takes all parameters (float, on a CPU or CUDA).

    torch's default on the CPU is a per-tensor loop: 6.5 ms per step for mit-nano's 155
    tensors against 2.0 ms fused on 2 threads (``benchmarks/optimizer_step.py``), about
    2 % of a warmup iteration; on CUDA the default is the multi-tensor ``foreach`` path.
    The same update, summed in another order (not bit for bit the loop's).
    """
    parameters = list(model.parameters())
    devices = {p.device.type for p in parameters}
    return (
        bool(parameters)
        and devices <= {"cpu", "cuda"}
        and len(devices) == 1
        and all(p.is_floating_point() for p in parameters)
    )


@dataclass(frozen=True)
class WarmupPoly:
    """Learning-rate factor at iteration ``t``: ``poly(t) * warmup(t)``.

    ``poly(t) = (1 - t / max_iters) ** power`` (0 from ``max_iters`` on) and
    ``warmup(t) = r + (1 - r) * t / warmup_iters`` for ``t < warmup_iters``, else 1, with
    ``r = warmup_ratio``: the warmup scales the polynomial schedule (mmcv's linear warmup),
    so the rate rises linearly from ``r * lr`` to ``poly(warmup_iters) * lr`` and then
    decays to 0. A picklable object, so the scheduler's ``state_dict`` records it.
    """

    warmup_iters: int
    max_iters: int
    power: float
    warmup_ratio: float

    def __call__(self, iteration: int) -> float:
        poly = max(1.0 - iteration / self.max_iters, 0.0) ** self.power
        if iteration >= self.warmup_iters:
            return poly
        progress = iteration / self.warmup_iters
        return poly * (self.warmup_ratio + (1.0 - self.warmup_ratio) * progress)


def build_scheduler(
    optimizer: Optimizer,
    warmup_iters: int = 1500,
    max_iters: int = 40000,
    power: float = 1.0,
    warmup_ratio: float = 1e-6,
) -> LambdaLR:
    """LambdaLR with :class:`WarmupPoly`; call ``step()`` once after every optimiser step.

    The rate during iteration ``t`` (0-based) is ``base_lr * WarmupPoly(t)``. Resume by
    loading both the optimizer's and the scheduler's ``state_dict``.
    """
    if max_iters <= 0 or not 0 <= warmup_iters <= max_iters:
        raise ValueError(
            f"need max_iters > 0 and 0 <= warmup_iters <= max_iters, got "
            f"warmup_iters={warmup_iters}, max_iters={max_iters}"
        )
    if power <= 0 or not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(
            f"need power > 0 and 0 <= warmup_ratio <= 1, got power={power}, "
            f"warmup_ratio={warmup_ratio}"
        )
    return LambdaLR(optimizer, WarmupPoly(warmup_iters, max_iters, power, warmup_ratio))


def optimizer_and_schedule(
    model: nn.Module, config: OptimizerConfig, iterations: int
) -> tuple[Optimizer, LambdaLR]:
    """A stage's AdamW and its schedule over ``iterations`` steps (at least one)."""
    optimizer = build_optimizer(
        model,
        lr=config.lr,
        betas=config.betas,
        weight_decay=config.weight_decay,
        head_lr_mult=config.head_lr_mult,
        no_decay=config.no_decay,
    )
    steps = max(iterations, 1)
    schedule = build_scheduler(
        optimizer,
        warmup_iters=min(config.warmup_iters, steps),
        max_iters=steps,
        power=config.poly_power,
    )
    return optimizer, schedule
