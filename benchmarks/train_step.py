"""Training-step cost of HRDA against its two alternatives: same network, same batch.

What is compared (``C`` = HR context crop side, ``s`` = scale, ``D`` = detail crop side;
every variant receives the *same* batch of ``B`` HR context crops ``C x C`` with HR labels,
the same network weights and the same AdamW parameter groups as the trainer):

- ``lr_only``  DAFormer: ``HRDAModel(mode="lr_only", scale=s)``; the crop is downscaled by
  ``s`` and the network sees one ``C/s x C/s`` input per image.
- ``naive_hr`` naive full resolution: ``HRDAModel(mode="lr_only", scale=1)``; the network
  sees the whole ``C x C`` HR crop, i.e. the same area as HRDA's context without
  downscaling. (The paper's own "naive" baseline instead shrinks the HR crop to 768x768 to
  fit the memory of HRDA; ours keeps the area equal, which is the cost HRDA avoids.)
- ``hrda``     HRDA: ``HRDAModel(mode="hrda", scale=s)``; LR context ``C/s`` plus one HR
  detail crop ``D x D`` per image (a random aligned box), scale attention and fusion.

One step = ``zero_grad`` + forward (under bf16 autocast with ``--precision bf16``) +
``hrda_loss`` + backward + AdamW ``step`` on synthetic tensors already on the device.
``--uda`` adds ``uda_*`` rows: one full self-training step of the real
:class:`~hrda_kedro.hrda.training.trainer.Trainer` (``Trainer.step``: EMA-teacher pseudo-labels
of the target crop -- for HRDA an LR pass plus HR sliding windows of the detail size --,
source pass, ClassMix + strong augmentation, mix pass, AdamW, LR schedule, EMA update) on
a fixed synthetic source/target batch, for each of the three models.

Method: every (precision, variant) runs in a fresh Python process (so peak memory cannot
mix between variants); after building the model, optimizer and batch, the memory peak is
reset and a baseline taken; ``--warmup`` untimed steps run, then ``--steps`` timed steps
(each ending with a device synchronisation); the table gives the median and minimum.
Memory: ``peak_mb`` is the absolute peak (CUDA: ``torch.cuda.max_memory_allocated``; CPU:
the process's peak RSS, ``VmHWM``, see ``_common.py`` for why not ``ru_maxrss``);
``step_mem_mb`` is the peak minus the baseline, i.e. what training needs on top of the
resident weights and batch (gradients, AdamW state, activations, temporaries). On CUDA
both are read over the timed steps, and the warmup's peak, which holds cuDNN's autotuning
workspaces, is the CSV's ``warmup_peak_mb`` (``_common.timed_with_memory``).
FLOPs of one step (forward + backward; the optimizer's elementwise work is not counted)
are counted with ``torch.utils.flop_counter.FlopCounterMode``, corrected where torch 2.14
miscounts (grouped-convolution backward, CPU attention: ``_common.count_flops``);
``tflops`` is that count divided by the median step time. The same worker, with the same
threads, then measures a large matmul and a large 3x3 convolution (``_common.measured_peaks``):
``matmul_share`` and ``conv_share`` are the step's rate as a share of each, the distance to
what this hardware reaches; ``peak_share`` is the share of a data-sheet ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

VARIANTS = ("lr_only", "naive_hr", "hrda")
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's recipe: MiT-B5, 1024x1024 HR context -> 512 LR, 512 detail, batch 2.
    "paper": {
        "encoder": "mit-b5", "context": "1024", "detail": "512", "scale": 2, "batch": 2,
        "embed_dim": 256, "steps": 10, "warmup": 3, "uda": True,
    },
    # Seconds on a laptop CPU; the validation setting.
    "tiny": {
        "encoder": "mit-nano", "context": "64", "detail": "32", "scale": 2, "batch": 2,
        "embed_dim": 32, "steps": 5, "warmup": 2, "uda": True,
    },
}  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "encoder": "mit-nano", "context": "256", "detail": "128", "scale": 2, "batch": 2,
    "embed_dim": 64, "steps": 10, "warmup": 2, "uda": False,
}  # fmt: skip
TABLE_COLUMNS = (
    "precision", "variant", "teacher_thread", "network_input", "median_s", "min_s", "peak_mb", "step_mem_mb",
    "gflop", "tflops", "matmul_share", "conv_share", "peak_share", "first_step_s",
)  # fmt: skip
CSV_COLUMNS = (
    *TABLE_COLUMNS, "description", "encoder", "batch", "context", "detail", "scale",
    "channels_last", "device", "cpu", "gpu", "torch", "threads", "host_memory", "compile", "hr_window_batch", "steps", "warmup",
    "warmup_peak_mb", "mem_source", "matmul_gflops", "conv3x3_gflops", "times_s", "error",
)  # fmt: skip
# A row's fields from its workers' results (_common.pooled): the first's, the largest (of
# the measured peaks: the ceiling any worker of the row saw on this machine).
POOLED_COPIED = ("device", "cpu", "gpu", "torch", "threads", "mem_source", "flops")
POOLED_MAXIMA = (
    "peak_mb",
    "warmup_peak_mb",
    "step_mem_mb",
    "first_step_s",
    "matmul_gflops",
    "conv3x3_gflops",
)


# --------------------------------------------------------------------------- worker


def _base(variant: str) -> str:
    """The model variant of a row: ``uda_hrda_mic`` and ``uda_hrda_nooverlap`` are ``hrda``."""
    return variant.removeprefix("uda_").removesuffix("_mic").removesuffix("_nooverlap")


def _describe(
    variant: str, context: tuple[int, int], detail: tuple[int, int], s: int
) -> tuple[str, str]:
    lr = (context[0] // s, context[1] // s)
    base = _base(variant)
    network_input = {
        "lr_only": f"LR {common.fmt_hw(lr)}",
        "naive_hr": f"HR {common.fmt_hw(context)}",
        "hrda": f"LR {common.fmt_hw(lr)} + HR {common.fmt_hw(detail)}",
    }[base]
    description = {
        "lr_only": f"DAFormer: HR context {common.fmt_hw(context)} downscaled x{s}",
        "naive_hr": f"naive: full-res network on the HR context {common.fmt_hw(context)} "
        "(lr_only, scale 1)",
        "hrda": f"HRDA: LR context + HR detail {common.fmt_hw(detail)}, attention fusion",
    }[base]
    if variant.startswith("uda_"):
        mic = variant.endswith("_mic")
        network_input += " (x3 passes + teacher)" if mic else " (x2 passes + teacher)"
        description = (
            "self-training Trainer.step: EMA-teacher pseudo-labels, source pass, ClassMix + "
            "strong augmentation, mix pass, "
            + ("MIC masked-target pass, " if mic else "")
            + (
                "teacher's HR windows edge to edge (official nooverlap), "
                if variant.endswith("_nooverlap")
                else ""
            )
            + f"AdamW, EMA; model = {description}"
        )
    return network_input, description


def _model(cfg: dict[str, Any], variant: str) -> Any:
    import torch

    from hrda_kedro.hrda.model import HRDAModel
    from hrda_kedro.hrda.networks import NetworkConfig, build_network

    torch.manual_seed(0)  # the same initial weights for every variant
    network = build_network(
        NetworkConfig(
            architecture="daformer",
            encoder=cfg["encoder"],
            decoder_embed_dim=cfg["embed_dim"],
            attention_embed_dim=cfg["embed_dim"],
        )
    )
    base = _base(variant)
    scale = 1 if base == "naive_hr" else cfg["scale"]
    mode = "hrda" if base == "hrda" else "lr_only"
    if cfg.get("compile"):
        # The three parts HRDA calls; compiling them keeps the model's Python control flow
        # (crops, fusion) out of the graph. The first step pays the compilation.
        for part in ("extract", "segment", "attend"):
            setattr(network, part, torch.compile(getattr(network, part)))
    return HRDAModel(
        network,
        scale=scale,
        detail_hw=tuple(cfg["detail"]),
        mode=mode,
        hr_window_batch=cfg.get("hr_window_batch"),
        hr_slide_overlapping=not variant.endswith("_nooverlap"),
    )


class _SyntheticSegmentation:
    """In-memory uint8 images of exactly the context size, random trainId labels."""

    def __init__(self, count: int, hw: tuple[int, int], seed: int) -> None:
        import torch

        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (count, 3, *hw), dtype=torch.uint8, generator=gen)
        self.labels = torch.randint(0, 19, (count, *hw), generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "label": self.labels[index]}


def _plain_step(cfg: dict[str, Any], variant: str, device: Any, autocast: Any) -> Any:
    """The model, optimizer and batch of one plain training step; returns the step."""
    import torch

    from hrda_kedro.hrda.crops import sample_box
    from hrda_kedro.hrda.losses import hrda_loss
    from hrda_kedro.hrda.training.optim import build_optimizer

    model = _model(cfg, variant).to(device)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model)
    context, detail = tuple(cfg["context"]), tuple(cfg["detail"])
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(cfg["batch"], 3, *context, generator=gen).to(device)
    if cfg["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 19, (cfg["batch"], *context), generator=gen).to(device)
    align = cfg["scale"] * model.output_stride
    boxes = [sample_box(context, detail, align, gen) for _ in range(cfg["batch"])]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = model(images, boxes)
        loss, _ = hrda_loss(out, labels, boxes, None, 0.1)
        loss.backward()
        optimizer.step()

    return step


def uda_trainer(cfg: dict[str, Any], variant: str, device: Any, dtype: Any) -> Any:
    """A real self-training Trainer on a synthetic source/target set (``variant``:
    ``uda_<model variant>``, ``_mic`` for MIC, ``_nooverlap`` for edge-to-edge HR windows)."""
    from hrda_kedro.hrda.training.devices import DeviceSetup
    from hrda_kedro.hrda.training.streams import StageData
    from hrda_kedro.hrda.training.trainer import Trainer
    from hrda_kedro.params import SelfTrainingParams, parse

    model = _model(cfg, variant)
    context = tuple(cfg["context"])
    params = parse(
        SelfTrainingParams,
        {
            "iterations": 100_000,
            "source_batch_size": cfg["batch"],
            "target_batch_size": cfg["batch"],
            "log_every": 100_000,
            "checkpoint_every": 100_000,
            "rare_class_sampling": {"enabled": False},
            # MIC's official 16 x 16 mask cells per crop (64 px on 1024 crops).
            "mic": {
                "enabled": variant.endswith("_mic"),
                "mask_block_size": max(1, context[0] // 16),
                "mask_block_reference_size": None,
            },
        },
        "self_training",
    )
    setup = DeviceSetup(
        device,
        autocast_dtype=dtype,
        channels_last=cfg["channels_last"],
        teacher_thread=cfg.get("teacher_thread", "on") == "on",
    )
    trainer = Trainer(
        model,
        params,
        StageData(
            _SyntheticSegmentation(4, context, seed=1), _SyntheticSegmentation(4, context, seed=2)
        ),
        context_crop=context,
        hr_loss_weight=0.1,  # HRDA's
        uda=params,
        setup=setup,
        seed=1,
        progress_bar=False,
    )
    return trainer


def _uda_step(cfg: dict[str, Any], variant: str, device: Any, dtype: Any) -> Any:
    """One ``Trainer.step`` of :func:`uda_trainer` on a fixed batch; ``in_sequence`` runs
    the teacher after the source pass whatever ``--teacher-thread`` says (the FLOP counter
    sees only its own thread's operators)."""
    trainer = uda_trainer(cfg, variant, device, dtype)
    source = trainer.source_stream.next_batch()
    target = trainer.target_stream.next_batch()
    sequential = dataclasses.replace(trainer.setup, teacher_thread=False)

    def step(in_sequence: bool = False) -> None:
        setup = trainer.setup
        trainer.setup = sequential if in_sequence else setup
        try:
            trainer.step(source, target)
        finally:
            trainer.setup = setup
        trainer.iteration += 1

    return step


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    common.apply_host_memory(cfg["host_memory"])
    import torch

    common.set_threads(cfg["threads"])
    device = common.worker_device(cfg["device"])
    dtype = torch.bfloat16 if cfg["precision"] == "bf16" else None

    def autocast() -> Any:
        return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)

    variant = cfg["variant"]
    if variant.startswith("uda_"):
        step = _uda_step(cfg, variant, device, dtype)
    else:
        step = _plain_step(cfg, variant, device, autocast)
    first_step_s: list[float] = []

    def step_timing_the_first() -> None:
        """The first call also pays one-off costs: compilation, allocator growth."""
        if first_step_s:
            step()
            return
        tic = time.perf_counter()
        step()
        common.synchronize(device)
        first_step_s.append(time.perf_counter() - tic)

    measured = common.timed_with_memory(
        step_timing_the_first, device, cfg["warmup"], cfg["steps"], extra="step_mem_mb"
    )
    counted = partial(step, in_sequence=True) if variant.startswith("uda_") else step
    flops, flops_per_op = common.count_flops(counted)
    peaks = common.measured_peaks(device, dtype)
    profile = _profile_table(step, device, cfg["profile"]) if cfg["profile"] else ""
    return {
        **measured,
        "flops": flops,
        "flops_per_op": flops_per_op,
        **peaks,
        "first_step_s": first_step_s[0],
        "profile": profile,
    }


def _profile_table(step: Any, device: Any, rows: int) -> str:
    """The ``rows`` most expensive operators of one step, per input shape (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, record_shapes=True) as prof:
        step()
        common.synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages(group_by_input_shape=True).table(
        sort_by=sort_by, row_limit=rows, max_name_column_width=40, max_shapes_column_width=60
    )


# --------------------------------------------------------------------------- parent


def _parser() -> argparse.ArgumentParser:
    parser = common.argument_parser(
        "Median training-step time, peak memory and TFLOP/s of LR-only "
        "(DAFormer), naive full-resolution and HRDA on the same network and batch."
    )
    common.add_preset_option(
        parser,
        PRESETS,
        "start from a preset; explicit options override it (paper: MiT-B5, 1024 HR context "
        "-> 512 LR, 512 detail, batch 2, with --uda)",
    )
    common.add_device_option(parser)
    parser.add_argument("--encoder", help=f"mit-nano .. mit-b5 (default {DEFAULTS['encoder']})")
    parser.add_argument(
        "--embed-dim",
        type=int,
        dest="embed_dim",
        help=f"decoder/attention head channels (paper 256; default {DEFAULTS['embed_dim']})",
    )
    parser.add_argument(
        "--context",
        help="HR context crop, e.g. 1024 or 512x1024; the LR "
        f"input is context/scale (default {DEFAULTS['context']})",
    )
    parser.add_argument("--detail", help=f"HR detail crop (default {DEFAULTS['detail']})")
    parser.add_argument("--scale", type=int, help=f"HRDA scale s (default {DEFAULTS['scale']})")
    parser.add_argument(
        "--batch", type=common.count_arg(1), help=f"images per step (default {DEFAULTS['batch']})"
    )
    parser.add_argument(
        "--steps", type=common.count_arg(1), help=f"timed steps (default {DEFAULTS['steps']})"
    )
    parser.add_argument(
        "--warmup",
        type=common.count_arg(0),
        help=f"untimed steps first (default {DEFAULTS['warmup']})",
    )
    parser.add_argument(
        "--precision",
        type=common.comma_list_of(("fp32", "bf16")),
        default="fp32",
        help="fp32 | bf16 | a comma list such as fp32,bf16 (bf16 = autocast)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        dest="channels_last",
        help="model and inputs in channels_last memory format",
    )
    parser.add_argument(
        "--hr-window-batch",
        type=int,
        default=None,
        dest="hr_window_batch",
        help="HR crops per network call in the teacher's sliding windows "
        "(model.inference.hr_window_batch; default: all in one call): less memory, more calls",
    )
    parser.add_argument(
        "--variants",
        type=common.comma_list_of(VARIANTS),
        default=",".join(VARIANTS),
        help="comma list out of " + ", ".join(VARIANTS),
    )
    uda = parser.add_mutually_exclusive_group()
    uda.add_argument(
        "--uda",
        action="store_true",
        default=None,
        help="also time one full self-training Trainer.step per variant",
    )
    uda.add_argument("--no-uda", action="store_false", dest="uda")
    parser.add_argument(
        "--teacher-thread",
        type=common.comma_list_of(("on", "off")),
        default="on",
        dest="teacher_thread",
        help="on | off | on,off: the self-training rows' EMA teacher predicts in a thread of its "
        "own beside the source pass (runtime.teacher_thread; CPU, 2+ threads; default on)",
    )
    parser.add_argument(
        "--mic",
        action="store_true",
        help="with --uda, also time the HRDA self-training step with MIC (uda_hrda_mic)",
    )
    parser.add_argument(
        "--nooverlap",
        action="store_true",
        help="with --uda, also time the HRDA self-training step whose teacher tiles its HR "
        "windows edge to edge (model.hrda.hr_slide_overlapping: false, the official nooverlap "
        "ablation; uda_hrda_nooverlap)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        dest="peak_tflops",
        help="the hardware's peak TFLOP/s for the chosen precision, for the "
        "peak_share column (e.g. H100 SXM dense bf16 ~989)",
    )
    common.add_threads_option(parser)
    common.add_host_memory_option(parser)
    common.add_rounds_option(
        parser,
        "repeat all variants this many times, interleaved, and pool the "
        "step times (robust against a drifting, shared machine)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the table, the N most expensive operators of one step of each variant "
        "(torch.profiler, grouped by input shape); 0: none",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network's encoder, segmentation and attention heads",
    )
    common.add_worker_options(parser, timeout_help="seconds per variant")
    return parser


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = common.preset_settings(args, DEFAULTS, PRESETS)
    settings["context"] = common.parse_hw(str(settings["context"]))
    settings["detail"] = common.parse_hw(str(settings["detail"]))
    return settings


def _ratio(a: float | None, b: float | None) -> float:
    return a / b if a and b else float("nan")


def _ratio_notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    for precision in dict.fromkeys(r["precision"] for r in rows):
        good = [r for r in rows if r["precision"] == precision and not r.get("error")]
        plain = {r["variant"]: r for r in good if not r["teacher_thread"]}
        modes = list(dict.fromkeys(r["teacher_thread"] for r in good if r["teacher_thread"]))
        notes += _hrda_ratios(precision, "", plain, "")
        for mode in modes:
            by = {r["variant"]: r for r in good if r["teacher_thread"] == mode}
            label = f" (teacher thread {mode})" if len(modes) > 1 else ""
            notes += _hrda_ratios(precision, "uda_", by, label)
            notes += _hrda_ratios(precision, "uda_", by, label, variant="hrda_nooverlap")
            hrda = by.get("uda_hrda")
            for variant, what in (
                ("uda_hrda_mic", "the cost of MIC"),
                ("uda_hrda_nooverlap", "edge-to-edge teacher windows"),
            ):
                other = by.get(variant)
                if other is not None and hrda is not None:
                    notes.append(
                        f"{precision} {variant} / uda_hrda ({what}){label}: time "
                        f"{_ratio(other['median_s'], hrda['median_s']):.2f}x, peak "
                        f"{_ratio(other['peak_mb'], hrda['peak_mb']):.2f}x, step memory "
                        f"{_ratio(other['step_mem_mb'], hrda['step_mem_mb']):.2f}x"
                    )
        if {"on", "off"} <= set(modes):
            on = {r["variant"]: r for r in good if r["teacher_thread"] == "on"}
            off = {r["variant"]: r for r in good if r["teacher_thread"] == "off"}
            for variant in on.keys() & off.keys():
                notes.append(
                    f"{precision} {variant}, teacher thread on / off: time "
                    f"{_ratio(on[variant]['median_s'], off[variant]['median_s']):.2f}x"
                )
    return notes


def _hrda_ratios(
    precision: str,
    prefix: str,
    by: dict[str, dict[str, Any]],
    label: str,
    variant: str = "hrda",
) -> list[str]:
    """An HRDA ``variant``'s time and memory against naive HR and LR-only among the rows
    ``by`` variant."""
    row = by.get(f"{prefix}{variant}")
    if row is None:
        return []
    notes = []
    for other, goal in (("naive_hr", " (goal <= 0.65x)"), ("lr_only", "")):
        ref = by.get(f"{prefix}{other}")
        if ref is not None:
            notes.append(
                f"{precision} {prefix}{variant} / {prefix}{other}{label}: time "
                f"{_ratio(row['median_s'], ref['median_s']):.2f}x, peak "
                f"{_ratio(row['peak_mb'], ref['peak_mb']):.2f}x, step memory "
                f"{_ratio(row['step_mem_mb'], ref['step_mem_mb']):.2f}x{goal}"
            )
    return notes


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(_parser(), argv, worker)
    settings = _settings(args)
    precisions = args.precision
    variants = list(args.variants)
    if settings["uda"]:
        variants += [f"uda_{v}" for v in variants]
        if args.mic and "hrda" in variants:
            variants.append("uda_hrda_mic")
        if args.nooverlap and "hrda" in variants:
            variants.append("uda_hrda_nooverlap")
    shared = {**settings, "device": args.device, "channels_last": args.channels_last,
              "host_memory": args.host_memory, "threads": args.threads,
              "compile": args.compile, "profile": args.profile,
              "hr_window_batch": args.hr_window_batch}  # fmt: skip
    modes = args.teacher_thread
    # rounds interleave the variants; the teacher thread only concerns the self-training rows
    grid = {"precision": precisions, "variant": variants, "teacher_thread": modes}
    runs, info = common.run_rounds(
        Path(__file__), shared, grid, args.rounds, args.timeout,
        keep=lambda point: point["variant"].startswith("uda_") or point["teacher_thread"] == modes[0],
    )  # fmt: skip
    rows = []
    for (precision, variant, mode), results in runs.items():
        network_input, description = _describe(
            variant, settings["context"], settings["detail"], settings["scale"]
        )
        row: dict[str, Any] = {
            "precision": precision,
            "variant": variant,
            "teacher_thread": mode if variant.startswith("uda_") else "",
            "network_input": network_input,
            "description": description,
            "encoder": settings["encoder"],
            "batch": settings["batch"],
            "context": common.fmt_hw(settings["context"]),
            "detail": common.fmt_hw(settings["detail"]),
            "scale": settings["scale"],
            "channels_last": args.channels_last,
            "host_memory": args.host_memory,
            "compile": args.compile,
            "hr_window_batch": args.hr_window_batch,
            "steps": settings["steps"] * len(results),
            "warmup": settings["warmup"],
        }
        row.update(common.pooled(results, POOLED_COPIED, POOLED_MAXIMA))
        if "median_s" in row:
            flops = row.pop("flops")
            row["gflop"] = flops / 1e9
            row["tflops"] = flops / row["median_s"] / 1e12
            for peak in ("matmul", "conv3x3"):
                row[f"{peak.removesuffix('3x3')}_share"] = (
                    row["tflops"] * 1e3 / row[f"{peak}_gflops"]
                )
            if args.peak_tflops:
                row["peak_share"] = row["tflops"] / args.peak_tflops
        rows.append(row)
    tags = [args.preset or "custom", settings["encoder"], common.fmt_hw(settings["context"]),
            common.device_type(info, args.device), *precisions]  # fmt: skip
    out = common.tagged_csv(args.out, "train_step", tags)
    title = (
        f"Training step, {settings['encoder']}, batch {settings['batch']}, HR context "
        f"{common.fmt_hw(settings['context'])}, scale {settings['scale']}, detail "
        f"{common.fmt_hw(settings['detail'])}, channels_last={args.channels_last}\n"
        + common.machine_line(info)
    )
    notes = ["", *_ratio_notes(rows)]
    notes += [
        f"ERROR {r['variant']} ({r['precision']}): {r['error']}" for r in rows if r.get("error")
    ]
    notes += [
        f"\nprofile of one {variant} step ({precision}):\n{result['profile']}"
        for (precision, variant, _), results in runs.items()
        for result in results[:1]
        if result.get("profile")
    ]
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out, notes)
    return common.exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
