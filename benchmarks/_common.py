"""Helpers shared by the benchmark scripts: machine description, memory, command line,
workers, tables.

Importing this module does not import torch, so an orchestrating parent process stays
small; the torch-dependent helpers import it lazily.

Peak memory on the CPU is the process's resident-set high-water mark (``VmHWM`` in
``/proc/self/status``, reset by writing ``5`` to ``/proc/self/clear_refs``), which is what
``resource.getrusage(...).ru_maxrss`` reports too, except that ``ru_maxrss`` can never be
reset and after ``fork`` + ``exec`` starts from the *parent's* peak (the kernel carries
the old address space's high-water mark into ``signal->maxrss``). Where ``/proc`` is not
available we fall back to ``ru_maxrss`` and say so in the ``mem_source`` column.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

# Before any torch import: the package sets the project's OpenMP wait policy (a brief spin,
# hrda_kedro/__init__.py), which libgomp reads once, when torch loads it. A worker that
# imported torch first would time libgomp's own 3 ms spin instead, which collapses under a
# competing load (docs/performance.md, "A busy CPU"). The package imports no torch.
import hrda_kedro  # noqa: E402, F401

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULT_MARKER = "@@BENCH-RESULT@@"


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu") -> dict[str, str]:
    """CPU model and core count, GPU name (when on CUDA), torch version."""
    import torch

    info = {
        "cpu": f"{cpu_model()} x{os.cpu_count()}",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "gpu": "",
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
    return info


def machine_label(info: dict[str, str]) -> str:
    return info["gpu"] or info["cpu"]


# --------------------------------------------------------------------------- memory

_KB = 1024


def _proc_status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


class HostMemory:
    """Peak resident set size of this process since :meth:`reset`, in MiB."""

    def __init__(self) -> None:
        self.source = "VmHWM" if _proc_status_kb("VmHWM") is not None else "ru_maxrss"
        self.baseline_mb = 0.0
        self.reset()

    def current_mb(self) -> float:
        rss = _proc_status_kb("VmRSS")
        if rss is None:  # no /proc: the best we have is the peak
            return self._peak_kb() / _KB
        return rss / _KB

    def _peak_kb(self) -> int:
        if self.source == "VmHWM":
            return _proc_status_kb("VmHWM") or 0
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def reset(self) -> None:
        """Reset the high-water mark (where the kernel allows it) and take a baseline."""
        if self.source == "VmHWM":
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.source = "VmHWM-unresettable"
        self.baseline_mb = self.current_mb()

    def peak_mb(self) -> float:
        return self._peak_kb() / _KB


class DeviceMemory:
    """Peak memory on ``device``: CUDA allocator statistics or the host RSS."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.host = None if self.cuda else HostMemory()
        self.source = "cuda.max_memory_allocated" if self.cuda else self.host.source
        self.baseline_mb = 0.0
        self.reset()

    def reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.host.reset()
            self.baseline_mb = self.host.baseline_mb

    def restart_peak(self) -> None:
        """Forget the CUDA peak so far, keeping the baseline."""
        import torch

        torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return self.host.peak_mb()


def synchronize(device: Any) -> None:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(
    fn: Any, device: Any, warmup: int, repeats: int, after_warmup: Callable[[], Any] | None = None
) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (then
    ``after_warmup`` is called, untimed)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if after_warmup is not None:
        after_warmup()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - tic)
    return times


def timed_with_memory(
    fn: Any, device: Any, warmup: int, repeats: int, extra: str = "extra_mb"
) -> dict[str, Any]:
    """A worker's result for :func:`timed_calls` of ``fn``: the machine, ``device``,
    ``times_s``, the memory peak over the calls (``peak_mb``), its part above the memory in
    use before them (under the key ``extra``) and how the peak was read (``mem_source``).

    On CUDA the peak is that of the timed calls, and the warmup's own is kept apart as
    ``warmup_peak_mb``: cuDNN's autotuning (``cudnn.benchmark``) tries algorithms in the
    first calls with workspaces of up to all free memory (141 690 MiB of an H200 for the
    fp32 paper-recipe step, against 11 287 MiB after it; none in bf16), a one-off that no
    later step needs. The CPU's peak
    (the resident-set high-water mark) cannot be split so and spans all calls."""
    memory = DeviceMemory(device)
    warmup_peak: list[float] = []

    def restart_peak() -> None:
        warmup_peak.append(memory.peak_mb())
        memory.restart_peak()

    times = timed_calls(fn, device, warmup, repeats, restart_peak if memory.cuda else None)
    peak = memory.peak_mb()
    return {
        **machine_info(str(device)),
        "device": str(device),
        "times_s": times,
        "peak_mb": peak,
        extra: peak - memory.baseline_mb,
        "warmup_peak_mb": warmup_peak[0] if warmup_peak else float("nan"),
        "mem_source": memory.source,
    }


# --------------------------------------------------------------------------- FLOPs


def _conv_backward_flops(
    grad_out_shape: Any,
    x_shape: Any,
    w_shape: Any,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    groups: int,
    output_mask: Any,
    out_shape: Any,
    **_: Any,
) -> int:
    """``convolution_backward`` FLOPs with grouped convolutions counted right.

    torch's formula (2.14) counts the weight gradient of a grouped convolution as if every
    input channel met every output channel, ``groups`` times too much: for the depthwise
    3x3 convolutions of MiT's Mix-FFN that is 10 to 100 times the true count (fixed
    upstream in pytorch/pytorch#183405, not in the torch we run). The weight gradient costs
    what the forward costs: ``2 * B * out_pixels * C_out * C_in/groups * k``; so does the
    input gradient, which torch's formula already gets right.
    """
    from math import prod

    from torch.utils.flop_counter import conv_flop_count

    x_shape, w_shape, grad_out_shape = list(x_shape), list(w_shape), list(grad_out_shape)
    if transposed:
        out_pixels = prod(x_shape[2:])  # a transposed conv's work runs over its input grid
    else:
        out_pixels = prod(grad_out_shape[2:])
    per_pass = 2 * x_shape[0] * out_pixels * prod(w_shape)
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, list(out_shape[0]), not transposed)
    if output_mask[1]:
        flops += per_pass
    return flops


def _cpu_attention_flops(query: Any, key: Any, value: Any, *_: Any, **__: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(list(query), list(key), list(value))


def _cpu_attention_backward_flops(
    grad_out: Any, query: Any, key: Any, value: Any, *_: Any, **__: Any
) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(list(grad_out), list(query), list(key), list(value))


def count_flops(fn: Any) -> tuple[int, dict[str, int]]:
    """FLOPs of one call of ``fn`` (multiply-adds x 2) and their split per operator.

    ``torch.utils.flop_counter.FlopCounterMode`` with two gaps of torch 2.14 closed: the
    grouped-convolution backward (:func:`_conv_backward_flops`) and the CPU kernels of
    ``scaled_dot_product_attention``, which it does not count at all (it knows only the
    CUDA ones). Only matmuls, convolutions and attention count; elementwise work does not.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {
        aten.convolution_backward: _conv_backward_flops,
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
    }
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops(), per_op


def measured_peaks(device: Any, dtype: Any = None, repeats: int = 5) -> dict[str, float]:
    """Achieved GFLOP/s of a large matmul and a large 3x3 convolution, with this process's
    threads and matmul settings: the ceiling a training step's rate is compared with.

    ``dtype`` (default float32) is the precision the step computes in (bf16 for autocast).
    CPU: ``2048 x 2048 @ 2048 x 2048`` and a 3x3, 128 -> 128 channel convolution of a
    ``(8, 128, 64, 64)`` batch; GPU: 8192-sided matmul and a 256-channel ``(32, 256, 128,
    128)`` batch. Best of ``repeats`` calls. Where one call already takes
    :data:`PEAK_CALL_S` at a smaller size, that size is measured instead
    (:func:`sized_call`): bf16 on a CPU without bf16 instructions multiplies 2048-sided
    matrices at 0.3 GFLOP/s, and the full sizes took 9 minutes per benchmark worker.
    """
    import torch
    import torch.nn.functional as F

    device = torch.device(device)
    dtype = dtype or torch.float32
    if device.type == "cuda":
        sides, channels, batches = (1024, 2048, 4096, 8192), 256, ((8, 64), (32, 128))
    else:
        sides, channels, batches = (256, 512, 1024, 2048), 128, ((1, 16), (1, 32), (8, 64))
    gen = torch.Generator().manual_seed(0)

    def matmul(side: int) -> tuple[Callable[[], Any], float]:
        a = torch.randn(side, side, generator=gen).to(device, dtype)
        b = torch.randn(side, side, generator=gen).to(device, dtype)
        return (lambda: a @ b), 2 * side**3

    def conv3x3(shape: tuple[int, int]) -> tuple[Callable[[], Any], float]:
        batch, side = shape
        x = torch.randn(batch, channels, side, side, generator=gen).to(device, dtype)
        w = torch.randn(channels, channels, 3, 3, generator=gen).to(device, dtype)
        return (lambda: F.conv2d(x, w, padding=1)), 2 * batch * side**2 * channels**2 * 9

    peaks = {}
    with torch.inference_mode():
        for name, make, sizes in (("matmul", matmul, sides), ("conv3x3", conv3x3, batches)):
            call, flops = sized_call(make, sizes, device)
            best = min(timed_calls(call, device, warmup=2, repeats=repeats))
            peaks[f"{name}_gflops"] = flops / best / 1e9
    return peaks


# One call of a peak measurement's problem: long enough to time, short enough not to wait.
PEAK_CALL_S = 0.1


def sized_call(
    make: Callable[[Any], tuple[Callable[[], Any], float]], sizes: Sequence[Any], device: Any
) -> tuple[Callable[[], Any], float]:
    """``make(size)``'s call and FLOPs for the first of the increasing ``sizes`` at which one
    warm call takes at least :data:`PEAK_CALL_S`, else for the last. Each size is called
    once untimed first: a first call pays one-off costs (cuBLAS set-up, cuDNN's autotuning
    of a new shape) that would stop the growth at the smallest size on a GPU."""
    for size in sizes:
        call, flops = make(size)
        call()
        synchronize(device)
        tic = time.perf_counter()
        call()
        synchronize(device)
        if time.perf_counter() - tic >= PEAK_CALL_S:
            break
    return call, flops


# --------------------------------------------------------------------------- command line


def argument_parser(description: str) -> argparse.ArgumentParser:
    """A benchmark's parser; ``--help`` shows every option's default."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


class UsageError(Exception):
    """Options that do not fit the project they name (a script's own check): ends the
    script as a bad option does, through :func:`user_errors`."""


@contextlib.contextmanager
def user_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
    """End the script as a bad option ends it (``<script>: error: ...``, exit status 2, no
    traceback) when the project reports a user's mistake: a checkpoint, model, parameter or
    data file the options named that is missing or wrong. Other errors keep their traceback."""
    try:
        yield
    except UsageError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except Exception as error:
        from hrda_kedro.cli import user_error_headline  # imports Kedro, not torch

        headline = user_error_headline(error)
        if headline is None:
            raise
        parser.exit(2, f"{parser.prog}: error: {headline}\n")


def comma_list(text: str) -> list[str]:
    """An argparse ``type`` for the benchmarks' list options: ``"a, b,,c"`` -> ``["a", "b",
    "c"]``. An empty list is refused: it would measure nothing, after the set-up's work."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma list of one or more, got {text!r}")
    return items


def comma_list_of(
    valid: Callable[[str], bool] | Iterable[str], expected: str | None = None
) -> Callable[[str], list[str]]:
    """An argparse ``type``: :func:`comma_list` whose every item is one of ``valid`` (names,
    or a test of one item); ``expected`` says what is, for the error line."""
    if not callable(valid):
        names = list(valid)
        expected = expected or " | ".join(names)
        valid = names.__contains__

    def parse(text: str) -> list[str]:
        items = comma_list(text)
        if bad := [item for item in items if not valid(item)]:
            raise argparse.ArgumentTypeError(
                f"expected a comma list of {expected}, got {', '.join(map(repr, bad))}"
            )
        return items

    return parse


def count_arg(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum`` (a bad one is argparse's
    one-line error, not a traceback from a worker)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def hw_arg(text: str) -> tuple[int, int]:
    """An argparse ``type`` for sizes: :func:`parse_hw`."""
    try:
        return parse_hw(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def device_arg(text: str) -> str:
    """An argparse ``type`` for ``--device``: cpu | cuda | cuda:N | auto, and a CUDA device
    only where this machine has it (checked once here, not by every worker)."""
    if text in ("auto", "cpu"):
        return text
    if not re.fullmatch(r"cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu | cuda | cuda:N | auto, got {text!r}")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(text.partition(":")[2] or 0) >= count:
        raise argparse.ArgumentTypeError(
            f"{text} asked for, but this machine has {count} CUDA devices"
        )
    return text


def project_arg(text: str) -> Path:
    """An argparse ``type`` for ``--project``: a folder holding a Kedro project."""
    path = Path(text)
    if not (path / "pyproject.toml").is_file():
        raise argparse.ArgumentTypeError(f"{path}: not a Kedro project (no pyproject.toml there)")
    return path


def kedro_params_arg(text: str) -> dict[str, Any]:
    """An argparse ``type`` for ``--params``: read by ``kedro run``'s own ``--params`` option,
    so the syntax (``a.b=1,c=x``) and the values (typed, nested) are those of the run."""
    import click
    from kedro.framework.cli.project import run

    option = next(param for param in run.params if param.name == "params")
    try:
        return option.process_value(click.Context(run), text)
    except click.UsageError as err:
        raise argparse.ArgumentTypeError(err.format_message()) from err


def add_kedro_options(parser: argparse.ArgumentParser) -> None:
    """``--env`` and ``--params``: the configuration a project ran with (``kedro run``'s
    options of those names), for the scripts that read the project's catalog and
    parameters; :func:`check_env` checks ``--env``, :func:`project_catalog` reads them."""
    parser.add_argument(
        "--env",
        help="the Kedro environment the project ran with (kedro run --env); its parameters "
        "draw the scenes",
    )
    parser.add_argument(
        "--params",
        type=kedro_params_arg,
        help="the parameters the project ran with, as kedro run --params takes them "
        "(e.g. 'ingestion.embedded.sizes.source_train=6,warmup.iterations=3')",
    )


def check_env(parser: argparse.ArgumentParser, project: Path, env: str | None) -> None:
    """Before any work: an ``--env`` (or ``KEDRO_ENV``) without a folder in the project's
    configuration is argparse's one line listing the environments (``kedro run``'s own
    check), not Kedro's framed ``MissingConfigException`` traceback of 80 lines."""
    import click
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    from hrda_kedro.cli import check_env as check_run_env

    bootstrap_project(project)
    try:
        check_run_env(env, str(project / settings.CONF_SOURCE))
    except click.UsageError as err:
        parser.error(f"argument --env: {err.message}")


@contextlib.contextmanager
def project_catalog(project: Path, env: str | None, params: dict[str, Any] | None) -> Iterator[Any]:
    """The catalog of ``project`` in environment ``env`` with the runtime ``params``
    (``--env``, ``--params``), as ``kedro run`` with those options reads it."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
        yield session.load_context().catalog


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=count_arg(0), default=0, help="torch threads (0: default)"
    )


def set_threads(threads: int) -> None:
    """torch's intra-op threads; 0 keeps torch's default."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def worker_device(name: str) -> Any:
    """A worker's ``--device`` (``auto``: CUDA where there is one, else the CPU); on CUDA
    with cuDNN autotuning and TF32 matmuls, as a tuned run would use."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    return device


def add_preset_option(
    parser: argparse.ArgumentParser, presets: dict[str, Any], help_text: str
) -> None:
    """``--preset``: a named set of settings (:func:`preset_settings`)."""
    parser.add_argument("--preset", choices=sorted(presets), help=help_text)


def preset_settings(
    args: argparse.Namespace, defaults: dict[str, Any], presets: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``defaults``, overridden by the ``--preset``'s values, overridden by each option of
    ``defaults`` given on the command line (the options default to None)."""
    settings = {**defaults, **(presets[args.preset] if args.preset else {})}
    for key in defaults:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    return settings


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", type=device_arg, default="auto", help="cpu | cuda | cuda:N | auto"
    )


def add_rounds_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--rounds``: how often :func:`run_rounds` repeats every configuration."""
    parser.add_argument("--rounds", type=count_arg(1), default=1, help=help_text)


def add_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="CSV path (default benchmarks/results/...)")


def add_worker_options(
    parser: argparse.ArgumentParser, timeout: float = 3600, timeout_help: str | None = None
) -> None:
    """The last options of a script that measures in workers: ``--timeout`` (seconds per
    worker), ``--out`` and the hidden ``--worker`` (:func:`run_worker`, :func:`parse_args`)."""
    parser.add_argument("--timeout", type=float, default=timeout, help=timeout_help)
    add_out_option(parser)
    parser.add_argument("--worker", help=argparse.SUPPRESS)


# --------------------------------------------------------------------------- host memory

HOST_MEMORY_CHOICES = ("keep", "release")


def add_host_memory_option(parser: Any) -> None:
    parser.add_argument(
        "--host-memory",
        choices=HOST_MEMORY_CHOICES,
        default="keep",
        dest="host_memory",
        help="keep: glibc keeps freed memory for reuse, as the project's runs do "
        "(runtime.keep_freed_host_memory); release: glibc's default, which returns it to "
        "the OS and faults it in again on the next call",
    )


def apply_host_memory(mode: str) -> None:
    """In a worker, before any tensor exists: the project's host-memory setting, or not."""
    if mode == "keep":
        from hrda_kedro.runtime.memory import keep_freed_host_memory

        keep_freed_host_memory()


# --------------------------------------------------------------------------- workers


def worker_result(payload: dict[str, Any]) -> None:
    """Hand a worker's result to the parent (one marked JSON line on stdout)."""
    sys.stdout.write(f"{RESULT_MARKER}{json.dumps(payload)}\n")
    sys.stdout.flush()


def parse_args(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    worker: Callable[[dict[str, Any]], dict[str, Any]],
) -> argparse.Namespace:
    """The parsed options. In a worker process (``--worker <json>``, started by
    :func:`run_worker`) it runs ``worker`` on that configuration instead, hands the result
    to the parent and exits, as ``--help`` does."""
    args = parser.parse_args(argv)
    if args.worker:
        worker_result(worker(json.loads(args.worker)))
        raise SystemExit(0)
    return args


def run_worker(
    script: Path,
    config: dict[str, Any],
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Run ``script --worker <json>`` in a fresh interpreter and return its result.

    A fresh process per measurement keeps peak-memory figures from mixing and gives each
    variant a cold allocator. ``env`` adds environment variables. On failure the worker's
    stderr tail is in ``error``.
    """
    cmd = [sys.executable, str(script), "--worker", json.dumps(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    return {"error": f"worker exited with {proc.returncode}: " + " | ".join(tail)}


def run_rounds(
    script: Path,
    shared: dict[str, Any],
    grid: dict[str, Sequence[Any]],
    rounds: int,
    timeout: float,
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[dict[tuple[Any, ...], list[dict[str, Any]]], dict[str, Any]]:
    """Every point of ``grid`` (config key -> its values) on top of ``shared`` in a fresh
    worker, all of them ``rounds`` times, interleaved (against a drifting, shared machine);
    with ``keep``, only the points (key -> value) it accepts.

    Returns the point (its values, in the grid's key order) -> its results, and the last
    good result (it names the machine; empty when every worker failed)."""
    points = [
        point
        for point in itertools.product(*grid.values())
        if keep is None or keep(dict(zip(grid, point, strict=True)))
    ]
    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    info: dict[str, Any] = {}
    for _ in range(rounds):
        for point in points:
            config = {**shared, **dict(zip(grid, point, strict=True))}
            result = run_worker(script, config, timeout)
            runs.setdefault(point, []).append(result)
            if "error" not in result:
                info = result
    return runs, info


def pooled(
    results: list[dict[str, Any]], copied: Sequence[str], maxima: Sequence[str]
) -> dict[str, Any]:
    """A row's fields from one configuration's results over the rounds: the first error;
    from the good ones ``copied`` (the first's), the largest of each of ``maxima``, every
    time (``times_s``), their median (``median_s``) and minimum (``min_s``)."""
    fields: dict[str, Any] = {}
    errors = [r["error"] for r in results if "error" in r]
    good = [r for r in results if "error" not in r]
    if errors:
        fields["error"] = errors[0]
    if good:
        fields.update({key: good[0][key] for key in copied})
        fields.update({key: max(r[key] for r in good) for key in maxima})
        times = [t for r in good for t in r["times_s"]]
        fields["median_s"] = median(times)
        fields["min_s"] = min(times)
        fields["times_s"] = ";".join(f"{t:.5f}" for t in times)
    return fields


# --------------------------------------------------------------------------- output


def parse_hw(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"512x1024"`` -> (512, 1024)."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected a size like 512 or 512x1024, got {text!r}")
    return int(parts[0]), int(parts[1])


def fmt_hw(hw: Sequence[int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def emit(
    title: str,
    rows: list[dict[str, Any]],
    table_columns: Sequence[str],
    csv_columns: Sequence[str],
    csv_path: Path,
    notes: Sequence[str] = (),
) -> None:
    """Print the table (and notes) and save every row as CSV; a table without rows, or whose
    every row failed, is not saved, so it never replaces a committed result."""
    if any(not row.get("error") for row in rows):
        write_csv(csv_path, rows, csv_columns)
        saved = f"saved: {csv_path}"
    else:
        saved = f"not saved: {'every row failed' if rows else 'no rows'} ({csv_path})"
    text = [title, "", format_table(rows, table_columns), *notes, saved]
    print("\n".join(text))  # noqa: T201 - the benchmark's table is its output


def machine_line(info: dict[str, Any]) -> str:
    """The title line naming a worker's machine (``?`` where every worker failed)."""
    return (
        f"machine: {info.get('gpu') or info.get('cpu', '?')} | torch {info.get('torch', '?')} "
        f"| threads {info.get('threads', '?')} | {datetime.now():%Y-%m-%d %H:%M}"
    )


def exit_code(rows: Iterable[dict[str, Any]]) -> int:
    """1 when a row failed (its ``error`` is set) or there is none, else 0."""
    rows = list(rows)
    return 1 if not rows or any(row.get("error") for row in rows) else 0


def device_type(info: dict[str, Any], requested: str) -> str:
    """``cuda`` or ``cpu``: the device the workers ran on (``requested`` where all failed)."""
    return str(info.get("device", requested)).split(":")[0]


def tagged_csv(out: Path | None, script: str, tags: Sequence[str]) -> Path:
    """``--out``, else ``results/<script>_<tags>.csv``: one file per setting measured."""
    return out or RESULTS_DIR / f"{script}_{slug('-'.join(tags))}.csv"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return float("nan")
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
