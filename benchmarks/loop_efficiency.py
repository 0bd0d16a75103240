"""Training-loop efficiency: the share of wall time spent outside forward, backward and optimizer.

The real :class:`~hrda_kedro.hrda.training.trainer.Trainer` runs ``Trainer.run()`` for
``--iterations`` steps -- source-only (``warmup`` parameters) and self-training
(``self_training`` parameters), both read from ``conf/base`` so the loop is the configured
one (logging every ``log_every`` steps, an in-training checkpoint every
``checkpoint_every`` steps and at the end, background batch prefetching, rare class
sampling) -- on an in-memory synthetic data set, and with ``--data embedded`` on the
embedded street-scene benchmark read from PNG files (decoded on every access, as with
``cache_images: false``; ``--cache`` decodes once up front).

Method: nothing in the library is edited or patched. ``torch.profiler`` records the
``record_function`` regions the trainer marks (:mod:`hrda_kedro.hrda.training.trainer`
and ``.loop``), and their times are summed:

- compute: the student's forwards (``forward``), the EMA teacher's pseudo-label forward
  (``teacher_forward``), every ``backward``, the optimiser update (``update``: clipping,
  AdamW, schedule) and the EMA update (``ema``);
- inside ``step`` but not compute: what the step's parts ``source``, ``pseudo_labels``,
  ``mix`` and ``mic`` do around their forwards and backwards (host-to-device copies,
  losses, pseudo-label bookkeeping, ClassMix, strong augmentation, masking), and the rest
  of the step (zero_grad, Python);
- outside ``step``: waiting for the prefetched batch (``data_wait``), the loss read-back
  and history (``flush``), checkpoints (``checkpoint``), the rest (progress bar, loop
  bookkeeping).

``overhead_share = (wall - compute) / wall`` where ``wall`` is the wall time of ``run()``
from the end of the first ``--skip`` steps (one-off warm-up: allocator, kernel selection)
to its return; ``loop_share = (wall - sum of Trainer.step times) / wall`` is the part
outside the step alone. ``steady_share`` is the same share up to the end of the last step,
i.e. without the once-per-stage tail (``tail_s``: last read-back, final checkpoint,
stopping the prefetch thread, copying the weights out), which short runs over-weight.
Goal: overhead_share <= 10%. The profiler's own per-operator cost is charged to every
phase, so shares are slightly pessimistic. On CUDA the worker runs with
``CUDA_LAUNCH_BLOCKING=1``, so GPU work is charged to the phase that queued it (this
removes the overlap of host and device: the run is slower than an untimed one);
``--sync-debug`` additionally counts the host synchronisations the library itself makes
(``torch.cuda.set_sync_debug_mode``). The batch producer runs in a background thread the
profiler does not record; only the time the step *waits* for it counts (``data_wait``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"encoder": "mit-nano", "embed_dim": 16, "image": "64x128", "context": "64",
             "detail": "32", "iterations": 30, "skip": 3},
}  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "image": "256x512", "iterations": 60, "skip": 5, "encoder": None, "embed_dim": None,
    "context": None, "detail": None,
}  # fmt: skip
COMPUTE = ("forward", "teacher_forward", "backward", "update", "ema")
IN_STEP = ("source", "pseudo_labels", "mix", "mic")  # less the compute regions inside them
OUTSIDE = ("data_wait", "flush", "checkpoint")
TABLE_COLUMNS = (
    "stage", "data", "steps", "s_per_step", "compute_ms", "in_step_other_ms",
    "outside_step_ms", "loop_share", "overhead_share", "steady_share", "tail_s", "goal_met",
)  # fmt: skip
BREAKDOWN_COLUMNS = ("stage", "data", *(f"{p}_ms" for p in (*COMPUTE, *IN_STEP, *OUTSIDE)),
                     "step_rest_ms", "loop_rest_ms", "syncs_per_step")  # fmt: skip
CSV_COLUMNS = (
    *TABLE_COLUMNS, *BREAKDOWN_COLUMNS[2:], "wall_s", "encoder", "image", "context", "detail",
    "batch", "log_every", "checkpoint_every", "precision", "device", "cpu", "gpu", "torch",
    "threads", "error",
)  # fmt: skip


# --------------------------------------------------------------------------- data


class SyntheticSet:
    """In-memory uint8 images with blocky random trainId labels (all 19 classes)."""

    def __init__(self, count: int, hw: tuple[int, int], seed: int, labels: bool = True) -> None:
        import torch
        import torch.nn.functional as F

        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (count, 3, *hw), dtype=torch.uint8, generator=gen)
        coarse = torch.randint(0, 19, (count, 1, max(hw[0] // 8, 1), max(hw[1] // 8, 1)),
                               generator=gen).float()  # fmt: skip
        self.labels = F.interpolate(coarse, size=hw, mode="nearest")[:, 0].long()
        self.with_labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {"image": self.images[index]}
        if self.with_labels:
            item["label"] = self.labels[index]
        return item

    def class_counts(self) -> Any:
        import numpy as np

        return np.stack([np.bincount(x.flatten().numpy(), minlength=19) for x in self.labels])


class PngFolderSet:
    """``<split>/images/*.png`` + ``<split>/labels/*.png`` (trainIds), decoded per access."""

    def __init__(self, split_root: Path, labels: bool = True, cache: bool = False) -> None:
        self.images = sorted((split_root / "images").glob("*.png"))
        if not self.images:
            raise FileNotFoundError(f"no images under {split_root / 'images'}")
        self.label_paths = [split_root / "labels" / p.name for p in self.images]
        self.with_labels = labels
        self._cache = [self._load(i) for i in range(len(self.images))] if cache else None

    def _load(self, index: int) -> dict[str, Any]:
        import numpy as np
        import torch
        from PIL import Image

        image = np.asarray(Image.open(self.images[index]).convert("RGB"))
        item = {"image": torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()}
        if self.with_labels:
            label = np.asarray(Image.open(self.label_paths[index]), dtype=np.int64)
            item["label"] = torch.from_numpy(label.copy())
        return item

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._cache[index] if self._cache is not None else self._load(index)

    def class_counts(self) -> Any:
        import numpy as np
        from PIL import Image

        return np.stack([
            np.bincount(np.asarray(Image.open(p), dtype=np.int64).ravel(), minlength=256)[:19]
            for p in self.label_paths
        ])  # fmt: skip


# --------------------------------------------------------------------------- regions


def region_times(events: Any) -> list[tuple[str, float, float]]:
    """``(region, start_s, end_s)`` of the trainer's regions among the profiler's events.

    An ``IN_STEP`` region's time is its own, less the compute regions nested in it, so the
    phases add up without counting a forward twice."""
    names = {*COMPUTE, *IN_STEP, *OUTSIDE, "step", "run"}
    spans = [
        (e.name, e.time_range.start / 1e6, e.time_range.end / 1e6)
        for e in events
        if e.name in names
    ]
    compute = [span for span in spans if span[0] in COMPUTE]
    result = []
    for name, t0, t1 in spans:
        inner = 0.0
        if name in IN_STEP:
            inner = sum(c1 - c0 for _, c0, c1 in compute if t0 <= c0 and c1 <= t1)
        result.append((name, t0, t1 - inner))
    return result


def totals(spans: list[tuple[str, float, float]], since: float, until: float) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for name, t0, t1 in spans:
        if t0 >= since and t1 <= until:
            sums[name] += t1 - t0
    return sums


# --------------------------------------------------------------------------- worker


def _load_conf(conf: Path) -> dict[str, Any]:
    import yaml

    merged: dict[str, Any] = {}
    for path in sorted(conf.glob("parameters*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def _datasets(cfg: dict[str, Any], tmp: Path) -> tuple[Any, Any]:
    if cfg["data"] == "synthetic":
        hw = tuple(cfg["image"])
        return SyntheticSet(cfg["count"], hw, seed=1), SyntheticSet(
            cfg["count"], hw, 2, labels=False
        )
    root = Path(cfg["embedded_root"])
    if cfg["draw"]:
        from hrda_kedro.data.streets import SplitSizes, StreetsConfig, write_benchmark

        root = tmp / "embedded"
        sizes = SplitSizes(source_train=cfg["draw"], target_train=cfg["draw"], target_val=0)
        height, width = cfg["image"]
        config = StreetsConfig(seed=0, height=height, width=width, domain_shift=1.0, sizes=sizes)
        write_benchmark(root, config)
    return (
        PngFolderSet(root / "source_train", cache=cfg["cache"]),
        PngFolderSet(root / "target_train", labels=False, cache=cfg["cache"]),
    )


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("CUDA_LAUNCH_BLOCKING", "1")  # GPU time in the phase that queued it
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from hrda_kedro.hrda.model_config import ModelConfig
    from hrda_kedro.hrda.training.config import TrainingConfig
    from hrda_kedro.hrda.training.streams import StageData
    from hrda_kedro.hrda.training.trainer import Trainer
    from hrda_kedro.params import RuntimeParams, SelfTrainingParams, parse
    from hrda_kedro.runtime.devices import resolve_device
    from hrda_kedro.runtime.models import build_model

    common.set_threads(cfg["threads"])
    conf = _load_conf(Path(cfg["conf"]))
    model_dict = json.loads(json.dumps(conf["model"]))
    network, hrda = model_dict["network"], model_dict["hrda"]
    network["pretrained"] = None
    for key, target in (
        ("encoder", network),
        ("embed_dim", None),
        ("context", hrda),
        ("detail", hrda),
    ):
        value = cfg.get(key)
        if value is None:
            continue
        if key == "embed_dim":
            network["decoder_embed_dim"] = network["attention_embed_dim"] = value
        elif key == "encoder":
            target["encoder"] = value
        else:
            target[f"{key}_crop"] = list(value)
    model_params = parse(ModelConfig, model_dict, "model")
    stage_key = "warmup" if cfg["stage"] == "source-only" else "self_training"
    stage = json.loads(json.dumps(conf[stage_key]))
    stage["iterations"] = cfg["iterations"]
    for key in ("log_every", "checkpoint_every"):
        if cfg.get(key):
            stage[key] = cfg[key]
    stage.get("optimizer", {})["warmup_iters"] = min(
        stage.get("optimizer", {}).get("warmup_iters", 0), cfg["iterations"]
    )
    params_cls = TrainingConfig if stage_key == "warmup" else SelfTrainingParams
    params = parse(params_cls, stage, stage_key)
    runtime = parse(RuntimeParams, {**conf.get("runtime", {}), "device": cfg["device"],
                                    "progress_bar": False}, "runtime")  # fmt: skip
    setup = resolve_device(runtime)
    with tempfile.TemporaryDirectory(prefix="hrda-loop-") as tmp_name:
        tmp = Path(tmp_name)
        source, target = _datasets(cfg, tmp)
        torch.manual_seed(runtime.seed)
        trainer = Trainer(
            build_model(model_params, load_pretrained=False),
            params,
            StageData(
                source,
                target if stage_key == "self_training" else None,
                source.class_counts(),
            ),
            context_crop=model_params.hrda.context_crop,
            hr_loss_weight=model_params.hrda.hr_loss_weight,
            uda=params if isinstance(params, SelfTrainingParams) else None,
            setup=setup,
            seed=runtime.seed,
            stage=cfg["stage"],
            progress_bar=cfg["progress_bar"],
        )
        sync_count = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cfg["sync_debug"] and setup.device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("run"):
                trainer.run(tmp / "state.pt", "loop-efficiency")
            if cfg["sync_debug"] and setup.device.type == "cuda":
                torch.cuda.set_sync_debug_mode(0)
                sync_count = sum("synchroniz" in str(w.message).lower() for w in caught)
    spans = region_times(prof.events())
    end = next(t1 for name, _, t1 in spans if name == "run")
    steps = sorted((s for s in spans if s[0] == "step"), key=lambda s: s[1])
    skip = min(cfg["skip"], len(steps) - 1)
    since = steps[skip - 1][2] if skip > 0 else steps[0][1]
    counted = len(steps) - skip
    last = steps[-1][2]
    return {
        **common.machine_info(str(setup.device)),
        "device": str(setup.device),
        "precision": "bf16" if setup.autocast_dtype is not None else "fp32",
        "wall_s": end - since,
        "steady_wall_s": last - since,
        "steps": counted,
        "sums": dict(totals(spans, since, float("inf"))),
        "steady_sums": dict(totals(spans, since, last)),
        "syncs": sync_count,
        "batch": params.source_batch_size,
        "log_every": params.log_every,
        "checkpoint_every": params.checkpoint_every,
        "context": common.fmt_hw(model_params.hrda.context_crop),
        "detail": common.fmt_hw(model_params.hrda.detail_crop),
        "encoder": model_params.network.encoder,
    }


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    sums = defaultdict(float, result["sums"])
    n, wall = result["steps"], result["wall_s"]
    compute = sum(sums[p] for p in COMPUTE)
    step = sums["step"]
    in_step_named = sum(sums[p] for p in IN_STEP)
    outside_named = sum(sums[p] for p in OUTSIDE)
    ms = 1000.0 / n
    row = {
        "steps": n,
        "wall_s": wall,
        "s_per_step": wall / n,
        "compute_ms": compute * ms,
        "in_step_other_ms": (step - compute) * ms,
        "outside_step_ms": (wall - step) * ms,
        "loop_share": (wall - step) / wall,
        "overhead_share": (wall - compute) / wall,
        "step_rest_ms": (step - compute - in_step_named) * ms,
        "loop_rest_ms": (wall - step - outside_named) * ms,
        "syncs_per_step": None if result["syncs"] is None else result["syncs"] / n,
    }
    row.update({f"{p}_ms": sums[p] * ms for p in (*COMPUTE, *IN_STEP, *OUTSIDE)})
    steady = defaultdict(float, result["steady_sums"])
    steady_wall = result["steady_wall_s"]
    row["steady_share"] = (steady_wall - sum(steady[p] for p in COMPUTE)) / steady_wall
    row["tail_s"] = wall - steady_wall
    row["goal_met"] = "yes" if row["overhead_share"] <= 0.10 else "no"
    return row


# --------------------------------------------------------------------------- parent


def _parser() -> argparse.ArgumentParser:
    parser = common.argument_parser(
        "Share of training-loop wall time outside forward, backward and optimizer, "
        "for the real Trainer (source-only and self-training)."
    )
    common.add_preset_option(parser, PRESETS, "tiny: mit-nano, 64x128 images")
    parser.add_argument(
        "--conf",
        type=Path,
        default=common.REPO_ROOT / "conf" / "base",
        help="folder with the parameters*.yml the loop is configured from",
    )
    common.add_device_option(parser)
    parser.add_argument("--stages", type=common.comma_list, default="source-only,self-training")
    parser.add_argument(
        "--data",
        type=common.comma_list,
        default="synthetic",
        help="comma list: synthetic, embedded (skipped with a note when "
        "--embedded-root has no images and --draw is 0)",
    )
    parser.add_argument("--embedded-root", default=str(common.REPO_ROOT / "data/01_raw/embedded"))
    parser.add_argument(
        "--draw",
        type=int,
        default=0,
        help="draw this many embedded images per split into a temp folder",
    )
    parser.add_argument("--cache", action="store_true", help="decode embedded PNGs once up front")
    parser.add_argument(
        "--image",
        help=f"synthetic / drawn image HxW (default {DEFAULTS['image']}, the embedded "
        "benchmark's size)",
    )
    parser.add_argument("--count", type=int, default=16, help="synthetic images per domain")
    parser.add_argument(
        "--iterations", type=int, help=f"steps per stage (default {DEFAULTS['iterations']})"
    )
    parser.add_argument(
        "--skip", type=int, help=f"first steps left out of the shares (default {DEFAULTS['skip']})"
    )
    parser.add_argument("--encoder", help="override model.network.encoder")
    parser.add_argument("--embed-dim", type=int, dest="embed_dim", help="override head channels")
    parser.add_argument("--context", help="override model.hrda.context_crop (HR)")
    parser.add_argument("--detail", help="override model.hrda.detail_crop")
    parser.add_argument("--log-every", type=int, dest="log_every", help="override log_every")
    parser.add_argument(
        "--checkpoint-every", type=int, dest="checkpoint_every", help="override checkpoint_every"
    )
    parser.add_argument("--progress-bar", action="store_true", dest="progress_bar")
    parser.add_argument(
        "--sync-debug",
        action="store_true",
        dest="sync_debug",
        help="CUDA: count the library's host synchronisations per step",
    )
    common.add_threads_option(parser)
    common.add_worker_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(_parser(), argv, worker)
    settings = common.preset_settings(args, DEFAULTS, PRESETS)
    base = {
        **settings, "conf": str(args.conf), "device": args.device, "threads": args.threads,
        "image": common.parse_hw(settings["image"]), "count": args.count,
        "context": common.parse_hw(c) if (c := settings["context"]) else None,
        "detail": common.parse_hw(d) if (d := settings["detail"]) else None,
        "log_every": args.log_every, "checkpoint_every": args.checkpoint_every,
        "embedded_root": args.embedded_root, "draw": args.draw, "cache": args.cache,
        "progress_bar": args.progress_bar, "sync_debug": args.sync_debug,
    }  # fmt: skip
    notes = [""]
    datas = args.data
    if (
        "embedded" in datas
        and not args.draw
        and not any(Path(args.embedded_root, "source_train", "images").glob("*.png"))
    ):
        datas.remove("embedded")
        notes.append(f"embedded benchmark skipped: no images under {args.embedded_root} "
                     "(run the ingestion pipeline, or pass --draw N)")  # fmt: skip
    rows = []
    info: dict[str, Any] = {}
    for data in datas:
        for stage in args.stages:
            cfg = {**base, "data": data, "stage": stage}
            result = common.run_worker(Path(__file__), cfg, args.timeout)
            data_label = data + (" (cached)" if data == "embedded" and args.cache else "")
            row: dict[str, Any] = {"stage": stage, "data": data_label}
            if "error" in result:
                row["error"] = result["error"]
            else:
                info = result
                row.update({k: result[k] for k in (
                    "encoder", "context", "detail", "batch", "log_every", "checkpoint_every",
                    "precision", "device", "cpu", "gpu", "torch", "threads")})  # fmt: skip
                row["image"] = (
                    common.fmt_hw(base["image"]) if data == "synthetic" or args.draw else ""
                )
                row.update(summarize(result))
            rows.append(row)
    tags = [
        args.preset or "conf",
        info.get("encoder", "model"),
        common.device_type(info, args.device),
    ]
    out = common.tagged_csv(args.out, "loop_efficiency", tags)
    title = (
        f"Training-loop efficiency ({info.get('encoder', '?')}, context {info.get('context', '?')}, "
        f"detail {info.get('detail', '?')}, batch {info.get('batch', '?')}, "
        f"{info.get('precision', '?')})\n" + common.machine_line(info)
    )
    ok = [r for r in rows if not r.get("error")]
    notes += ["", "per step (ms):", common.format_table(ok, BREAKDOWN_COLUMNS)] if ok else []
    notes += [f"ERROR {r['stage']} / {r['data']}: {r['error']}" for r in rows if r.get("error")]
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out, notes)
    return common.exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
