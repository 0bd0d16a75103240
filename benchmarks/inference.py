"""Full-image HRDA inference: sliding windows batched versus one by one.

``predict_full_image(model, images, SlidingWindows(window, stride, batch_size))`` cuts each
image into overlapping HR windows (the context size, stride half a window); every window runs an LR
pass of the whole window plus HR sliding windows of the detail size inside it
(``HRDAModel.predict_window``). Rows:

- ``sequential``: ``batch_size=1`` and ``hr_window_batch=1``: every network call sees one
  crop (one window's LR pass, then each of its HR crops alone), the unbatched baseline;
- ``chunk=N``: ``batch_size=N`` windows per ``predict_window`` call, all HR crops of those
  windows in one batch (``hr_window_batch=None``); ``chunk=all`` is ``batch_size=None``,
  every window of the batch of images at once.

Method: each row runs in a fresh Python process; the model (random weights, eval mode,
``torch.inference_mode``, optional bf16 autocast / channels_last) predicts a synthetic
batch of ``--images`` images ``--warmup`` times untimed, then ``--repeats`` timed times;
``images_per_s`` = images / median time. Peak memory as in ``train_step.py`` (CUDA:
``max_memory_allocated``; CPU: peak RSS ``VmHWM``), ``extra_mb`` above the resident model
and inputs. ``speedup`` is relative to the sequential row. The paper's test setting is
``--preset paper``: 2048x1024 images, 1024x1024 windows (3 per image), 512 detail, MiT-B5.
"""

from __future__ import annotations

import argparse
import resource
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"encoder": "mit-b5", "image": "1024x2048", "window": "1024", "detail": "512",
              "embed_dim": 256, "images": 1, "repeats": 3, "warmup": 1},
    "tiny": {"encoder": "mit-nano", "image": "64x128", "window": "64", "detail": "32",
             "embed_dim": 32, "images": 2, "repeats": 5, "warmup": 1},
}  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "encoder": "mit-nano", "image": "256x512", "window": "256", "detail": "128",
    "embed_dim": 64, "images": 1, "repeats": 5, "warmup": 1,
}  # fmt: skip
TABLE_COLUMNS = (
    "precision", "mode", "windows", "network_calls", "median_s", "images_per_s", "speedup",
    "peak_mb", "extra_mb", "faults_per_call",
)  # fmt: skip
CSV_COLUMNS = (
    *TABLE_COLUMNS, "encoder", "image", "window", "stride", "detail", "scale", "images",
    "channels_last", "device", "cpu", "gpu", "torch", "threads", "host_memory", "repeats", "warmup_peak_mb", "mem_source",
    "times_s", "error",
)  # fmt: skip
# A row's fields from its workers' results (_common.pooled): the first's, the largest.
POOLED_COPIED = (
    "device", "cpu", "gpu", "torch", "threads", "mem_source", "windows", "network_calls",
)  # fmt: skip
POOLED_MAXIMA = ("peak_mb", "warmup_peak_mb", "extra_mb", "faults_per_call")


class _PageFaults:
    """Minor page faults of each call (``getrusage``): memory the allocator got afresh."""

    def __init__(self) -> None:
        self.per_call: list[int] = []

    def counting(self, fn: Any) -> Any:
        def wrapped() -> None:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            fn()
            self.per_call.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

        return wrapped

    def median_of_timed(self, repeats: int) -> float:
        return common.median(self.per_call[-repeats:])


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    import math

    common.apply_host_memory(cfg["host_memory"])
    import torch

    from hrda_kedro.hrda.inference import predict_full_image
    from hrda_kedro.hrda.model import HRDAModel
    from hrda_kedro.hrda.model_config import SlidingWindows
    from hrda_kedro.hrda.networks import NetworkConfig, build_network
    from hrda_kedro.hrda.windows import sliding_window_boxes

    common.set_threads(cfg["threads"])
    device = common.worker_device(cfg["device"])
    torch.manual_seed(0)
    network = build_network(
        NetworkConfig(encoder=cfg["encoder"], decoder_embed_dim=cfg["embed_dim"],
                      attention_embed_dim=cfg["embed_dim"])
    )  # fmt: skip
    hr_window_batch = 1 if cfg["chunk"] == "sequential" else None
    model = HRDAModel(network, scale=cfg["scale"], detail_hw=tuple(cfg["detail"]),
                      hr_window_batch=hr_window_batch).to(device).eval()  # fmt: skip
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    image_hw, window, stride = tuple(cfg["image"]), tuple(cfg["window"]), tuple(cfg["stride"])
    images = torch.randn(cfg["images"], 3, *image_hw, generator=torch.Generator().manual_seed(1))
    images = images.to(device)
    if cfg["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    batch_size = {"sequential": 1, "all": None}.get(cfg["chunk"], cfg["chunk"])
    dtype = torch.bfloat16 if cfg["precision"] == "bf16" else None

    def predict() -> None:
        ctx = nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
        with torch.inference_mode(), ctx:
            predict_full_image(model, images, SlidingWindows(window, stride, batch_size))

    # Counting windows and network calls: the same arithmetic as the library's.
    align = cfg["scale"] * model.output_stride
    padded = tuple(
        max(math.ceil(v / align) * align, w) for v, w in zip(image_hw, window, strict=True)
    )
    windows = len(sliding_window_boxes(padded, window, stride)) * cfg["images"]
    hr_crops = len(sliding_window_boxes(window, model.detail_hw, model.detail_stride))
    per_call = windows if batch_size is None else batch_size
    calls = math.ceil(windows / per_call)
    network_calls = windows * (1 + hr_crops) if cfg["chunk"] == "sequential" else 2 * calls
    faults = _PageFaults()
    measured = common.timed_with_memory(
        faults.counting(predict), device, cfg["warmup"], cfg["repeats"]
    )
    return {
        **measured,
        "faults_per_call": faults.median_of_timed(cfg["repeats"]),
        "windows": f"{windows} x (1 LR + {hr_crops} HR)",
        "network_calls": network_calls,
    }


def _parser() -> argparse.ArgumentParser:
    parser = common.argument_parser(
        "Images/s and peak memory of full-image sliding-window HRDA prediction, "
        "windows batched in chunks versus one by one."
    )
    common.add_preset_option(
        parser, PRESETS, "paper: MiT-B5, 2048x1024 images, 1024 windows, 512 detail"
    )
    common.add_device_option(parser)
    parser.add_argument("--encoder", help=f"default {DEFAULTS['encoder']}")
    parser.add_argument(
        "--embed-dim", type=int, dest="embed_dim", help=f"default {DEFAULTS['embed_dim']}"
    )
    parser.add_argument("--image", help=f"image HxW (default {DEFAULTS['image']})")
    parser.add_argument("--window", help=f"HR window = context crop (default {DEFAULTS['window']})")
    parser.add_argument("--stride", help="window stride (default: half the window)")
    parser.add_argument("--detail", help=f"HR detail crop (default {DEFAULTS['detail']})")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument(
        "--images", type=common.count_arg(1), help=f"images per call (default {DEFAULTS['images']})"
    )
    parser.add_argument(
        "--chunks",
        type=common.comma_list,
        default="1,2,all",
        help="comma list of window chunk sizes (integers or 'all'); the "
        "sequential one-by-one row is always added",
    )
    parser.add_argument(
        "--repeats", type=common.count_arg(1), help=f"timed calls (default {DEFAULTS['repeats']})"
    )
    parser.add_argument(
        "--warmup", type=common.count_arg(0), help=f"untimed calls (default {DEFAULTS['warmup']})"
    )
    parser.add_argument(
        "--precision", type=common.comma_list, default="fp32", help="fp32 | bf16 | fp32,bf16"
    )
    parser.add_argument("--channels-last", action="store_true", dest="channels_last")
    common.add_threads_option(parser)
    common.add_host_memory_option(parser)
    common.add_rounds_option(
        parser, "repeat all modes this many times, interleaved, and pool the times"
    )
    common.add_worker_options(parser, timeout_help="seconds per row")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = common.parse_args(parser, argv, worker)
    settings = common.preset_settings(args, DEFAULTS, PRESETS)
    for key in ("image", "window", "detail"):
        settings[key] = common.parse_hw(str(settings[key]))
    window = settings["window"]
    settings["stride"] = (
        common.parse_hw(args.stride) if args.stride else (window[0] // 2, window[1] // 2)
    )
    chunks: list[Any] = ["sequential"]
    for item in args.chunks:
        if item != "all" and not (item.isdigit() and int(item) > 0):
            parser.error(f"argument --chunks: expected integers > 0 or 'all', got {item!r}")
        chunks.append("all" if item == "all" else int(item))
    precisions = args.precision
    if bad := [p for p in precisions if p not in ("fp32", "bf16")]:
        parser.error(f"argument --precision: expected fp32 | bf16, got {', '.join(bad)}")
    shared = {**settings, "scale": args.scale, "device": args.device,
              "channels_last": args.channels_last, "threads": args.threads,
              "host_memory": args.host_memory}  # fmt: skip
    grid = {"precision": precisions, "chunk": chunks}  # rounds interleave the modes
    runs, info = common.run_rounds(Path(__file__), shared, grid, args.rounds, args.timeout)
    rows = []
    base: dict[str, float] = {}
    for (precision, chunk), results in runs.items():
        row: dict[str, Any] = {
            "precision": precision,
            "mode": "sequential (1 window, HR 1)" if chunk == "sequential" else f"chunk={chunk}",
            "encoder": settings["encoder"],
            "image": common.fmt_hw(settings["image"]),
            "window": common.fmt_hw(window),
            "stride": common.fmt_hw(settings["stride"]),
            "detail": common.fmt_hw(settings["detail"]),
            "scale": args.scale,
            "images": settings["images"],
            "channels_last": args.channels_last,
            "host_memory": args.host_memory,
            "repeats": settings["repeats"] * len(results),
        }
        row.update(common.pooled(results, POOLED_COPIED, POOLED_MAXIMA))
        if "median_s" in row:
            row["images_per_s"] = settings["images"] / row["median_s"]
            base.setdefault(precision, row["images_per_s"])
            row["speedup"] = row["images_per_s"] / base[precision]
        rows.append(row)
    tags = [args.preset or "custom", settings["encoder"], common.fmt_hw(settings["image"]),
            common.device_type(info, args.device), *precisions]  # fmt: skip
    out = common.tagged_csv(args.out, "inference", tags)
    title = (
        f"Full-image inference, {settings['encoder']}, {settings['images']} image(s) "
        f"{common.fmt_hw(settings['image'])}, window {common.fmt_hw(window)} stride "
        f"{common.fmt_hw(settings['stride'])}, detail {common.fmt_hw(settings['detail'])}\n"
        + common.machine_line(info)
    )
    notes = [""]
    for precision in precisions:
        ok = [r for r in rows if r["precision"] == precision and not r.get("error")]
        batched = [r for r in ok if not r["mode"].startswith("sequential") and "speedup" in r]
        if batched and any(r["mode"].startswith("sequential") for r in ok):
            slowest = min(batched, key=lambda r: r["speedup"])
            notes.append(
                f"{precision}: slowest batched mode {slowest['mode']} at {slowest['speedup']:.2f}x "
                "the sequential speed (goal: never below 1x)"
            )
    notes += [f"ERROR {r['mode']} ({r['precision']}): {r['error']}" for r in rows if r.get("error")]
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out, notes)
    return common.exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
