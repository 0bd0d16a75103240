"""The DAFormer network's CPU paths against torch's plain modules, in one process.

On float32 CPU maps the network computes four things its own way (each equal to float
rounding, each in the deviation table of docs/architecture.md): the dilated depthwise
convolutions as shifted multiply-adds (``depthwise``), the heads' 1x1 convolutions as
batched matrix products (``pointwise``), BatchNorm folded into the convolution in
inference (``folded_bn``) and the heads' upsampling through channels-last (``cl_upsample``).

Variants: ``project`` (all four), ``plain`` (none: ``F.conv2d``, BatchNorm modules,
channels-first upsampling) and ``project - <path>`` (all but one: what that one adds). Every
round calls each variant in turn on the same model and batch, so a shared machine's drift
hits all alike; effects of a few percent need many rounds. Workloads: ``predict`` (one
512x256 image, full-image sliding windows, 4 per call), ``train`` (a supervised HRDA step)
and ``self-train`` (a self-training ``Trainer.step``: EMA teacher, source and mixed passes).
``--host-memory`` matters: glibc's default allocator (``release``) makes every fresh
activation fault its pages in, which the paths that allocate less save most on.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package
import train_step  # noqa: E402

PATHS = ("depthwise", "pointwise", "folded_bn", "cl_upsample")
WORKLOADS = ("predict", "train", "self-train")
COLUMNS = ("workload", "variant", "calls", "median_s", "min_s", "vs_project", "vs_plain")


def variants() -> dict[str, frozenset[str]]:
    """Variant name -> the paths it turns on."""
    names = {"project": frozenset(PATHS), "plain": frozenset()}
    names.update({f"project - {path}": frozenset(PATHS) - {path} for path in PATHS})
    return names


def _switches() -> dict[str, tuple[Any, str, Any, Any]]:
    """Path -> (owner, attribute, project value, plain value)."""
    import torch.nn.functional as F
    from torch import nn

    from hrda_kedro.hrda.networks import daformer, depthwise, pointwise

    def plain_upsample(x: Any, size: Any) -> Any:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    never = staticmethod(lambda *_: False)
    taps, matmul = depthwise.DilatedDepthwiseConv2d, pointwise.PointwiseConv2d
    return {
        "depthwise": (taps, "_use_taps", taps._use_taps, lambda *_: False),
        "pointwise": (matmul, "_use_matmul", matmul.__dict__["_use_matmul"], never),
        "folded_bn": (daformer.ConvBNReLU, "forward", daformer.ConvBNReLU.forward,
                      nn.Sequential.forward),
        "cl_upsample": (daformer, "upsample_features", daformer.upsample_features,
                        plain_upsample),
    }  # fmt: skip


def select(enabled: frozenset[str], switches: dict[str, tuple[Any, str, Any, Any]]) -> None:
    """Turn the ``enabled`` paths on and the others off (process-wide)."""
    for path, (owner, attribute, project, plain) in switches.items():
        setattr(owner, attribute, project if path in enabled else plain)


def _cfg() -> dict[str, Any]:
    return {**train_step.DEFAULTS, "context": (256, 256), "detail": (128, 128),
            "channels_last": False}  # fmt: skip


def _predict_call() -> Callable[[], None]:
    import torch

    from hrda_kedro.hrda.inference import predict_full_image
    from hrda_kedro.hrda.model_config import SlidingWindows

    model = train_step._model(_cfg(), "hrda").eval()
    image = torch.randn(1, 3, 256, 512, generator=torch.Generator().manual_seed(1))
    windows = SlidingWindows((256, 256), (128, 128), 4)  # the project's 4 windows per call

    def call() -> None:
        with torch.inference_mode():
            predict_full_image(model, image, windows)

    return call


def workload_call(name: str) -> Callable[[], None]:
    """One call of a workload on the project's CPU configuration (MiT-nano, 256 context)."""
    import torch

    cpu = torch.device("cpu")
    if name == "predict":
        return _predict_call()
    if name == "train":
        return train_step._plain_step(_cfg(), "hrda", cpu, nullcontext)
    return train_step._uda_step(_cfg(), "uda_hrda", cpu, None)


def measure(
    call: Callable[[], None], rounds: int, calls: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one median of ``calls`` calls per round."""
    switches = _switches()
    chosen = variants()
    times: dict[str, list[float]] = {name: [] for name in chosen}
    try:
        for _ in range(warmup):
            for enabled in chosen.values():
                select(enabled, switches)
                call()
        for _ in range(rounds):
            for name, enabled in chosen.items():
                select(enabled, switches)
                call()  # the first call after a switch settles caches and the allocator
                tic = time.perf_counter()
                for _ in range(calls):
                    call()
                times[name].append((time.perf_counter() - tic) / calls)
    finally:
        select(frozenset(PATHS), switches)
    return times


def rows_of(workload: str, times: dict[str, list[float]], calls: int) -> list[dict[str, Any]]:
    project, plain = (statistics.median(times[name]) for name in ("project", "plain"))
    return [
        {
            "workload": workload,
            "variant": name,
            "calls": calls * len(values),
            "median_s": statistics.median(values),
            "min_s": min(values),
            "vs_project": statistics.median(values) / project,
            "vs_plain": statistics.median(values) / plain,
        }  # fmt: skip
        for name, values in times.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=common.comma_list, default=list(WORKLOADS),
                        help=f"comma list of {', '.join(WORKLOADS)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds of every variant")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per variant and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    common.add_threads_option(parser)
    common.add_host_memory_option(parser)
    common.add_out_option(parser)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; expected some of {list(WORKLOADS)}")
    common.apply_host_memory(args.host_memory)  # before any tensor exists
    common.set_threads(args.threads)
    rows = []
    for workload in args.workloads:
        times = measure(workload_call(workload), args.rounds, args.calls, args.warmup)
        rows += rows_of(workload, times, args.calls)
    import torch

    info = {**common.machine_info("cpu"), "threads": torch.get_num_threads(),
            "host_memory": args.host_memory}  # fmt: skip
    out = args.out or common.RESULTS_DIR / f"cpu_paths_{args.host_memory}.csv"
    title = f"CPU paths of the DAFormer network, host memory {args.host_memory}"
    common.emit(f"{title}\n{common.machine_line(info)}", rows, COLUMNS, COLUMNS, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
