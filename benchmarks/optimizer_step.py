"""AdamW's step on the project's HRDA model: torch's per-tensor loop, its multi-tensor
``foreach`` path and the fused kernel the project uses (``build_optimizer``).

The three optimizers hold the same parameter groups (encoder / head, with and without
weight decay) over the same model with fixed random gradients; each timed round calls one
step of each, in turn, so a shared machine's drift hits all three alike. ``vs_loop`` is the
median against the loop's (torch's default on the CPU).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package
import train_step  # noqa: E402

VARIANTS = {"loop": {"fused": None, "foreach": False}, "foreach": {"fused": None, "foreach": True},
            "fused (project)": {}}  # fmt: skip
COLUMNS = ("variant", "tensors", "parameters", "median_ms", "vs_loop")


def _optimizers(encoder: str) -> tuple[Any, dict[str, Any]]:
    import torch

    from hrda_kedro.hrda.training.optim import build_optimizer

    config = {**train_step.DEFAULTS, "encoder": encoder, "detail": (128, 128)}
    model = train_step._model(config, "hrda")
    generator = torch.Generator().manual_seed(0)
    for parameter in model.parameters():
        parameter.grad = torch.randn(parameter.shape, generator=generator) * 1e-3
    optimizers = {}
    for name, options in VARIANTS.items():
        optimizer = build_optimizer(model, lr=6e-5)
        for group in optimizer.param_groups:
            group.update(options)
        optimizers[name] = optimizer
    return model, optimizers


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mit-nano")
    parser.add_argument("--repeats", type=int, default=50, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    common.add_threads_option(parser)
    common.add_out_option(parser)
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    model, optimizers = _optimizers(args.encoder)
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for round_ in range(args.warmup + args.repeats):
        for name, optimizer in optimizers.items():
            tic = time.perf_counter()
            optimizer.step()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - tic)
    parameters = list(model.parameters())
    loop_ms = 1000 * statistics.median(times["loop"])
    rows = []
    for name, values in times.items():
        median_ms = 1000 * statistics.median(values)
        rows.append({"variant": name, "tensors": len(parameters),
                     "parameters": sum(p.numel() for p in parameters),
                     "median_ms": median_ms, "vs_loop": median_ms / loop_ms})  # fmt: skip
    info = {**common.machine_info("cpu"), "threads": __import__("torch").get_num_threads()}
    out = args.out or common.RESULTS_DIR / "optimizer_step.csv"
    common.emit(f"AdamW step, {args.encoder}\n{common.machine_line(info)}", rows, COLUMNS,
                COLUMNS, out)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
