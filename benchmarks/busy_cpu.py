"""How much each phase slows down when other processes compete for the CPU.

A phase that runs on ``T`` torch threads next to ``L`` busy competing threads on ``C``
cores gets about ``C * T / (T + L)`` cores instead of ``min(T, C)``; it should slow down by
no more than that share (``fair_slowdown``). A phase whose threads wait for each other at
every parallel region (OpenMP barriers, spin-waiting) can slow down far more: one
descheduled thread stalls the others for a whole scheduler time slice.

Phases (the project's CPU configuration, random weights, synthetic 256x512 images):

- ``materialize``: what pseudo-label materialization does, ``--images`` images per unit:
  ``predict_full_image`` with ``window_batch`` windows per call, then softmax and argmax;
- ``evaluate``: ``predict_full_image_branches`` (fused, context, detail), ``--images``
  images per unit;
- ``train``: ``--train-steps`` self-training steps of HRDA (teacher, source, mix, AdamW,
  EMA) as training runs them, ``Trainer.run`` with its batch-prefetch thread; with
  ``--teacher-thread on`` (the project's ``runtime.teacher_thread``) the EMA teacher
  predicts in a thread of its own beside the source pass, ``off`` after it.

``--predict-streams`` (the project's ``runtime.predict_streams``) sets how many images the
two predicting phases compute at once: ``1``, one image on all threads, or ``auto``, one
image per torch thread, each on one thread (:mod:`hrda_kedro.hrda.image_streams`).

``--wait-policy`` compares how idle OpenMP threads wait (libgomp, torch's pip wheels):
``brief`` (what the project sets, see ``hrda_kedro/__init__.py``: spin 1000 rounds, about
10 us, then sleep), ``passive`` (asleep at once), ``spin<N>`` (asleep after N spin
rounds) and ``default`` (libgomp's own: spin about
3 ms, then sleep; the worker gets an empty ``OMP_WAIT_POLICY``, which libgomp ignores, and
no ``GOMP_SPINCOUNT``).

Method: for every thread setting, each phase runs in a fresh process that alternates
quiet and loaded units (quiet, loaded, quiet, ...): ``--load`` competing processes start
once, wait until they are busy, and are paused (``SIGSTOP``) during the quiet units and
resumed (``SIGCONT``) for the loaded ones (``spin``: a Python busy loop; ``torch``:
repeated 512x512 matmuls with torch's default threads, like another training run).
Alternating unit by unit puts the quiet and the loaded figure at the same moment of a
shared machine, whose own load drifts over minutes; ``slowdown`` = loaded median / quiet
median. ``nvcsw`` / ``nivcsw`` are the voluntary / involuntary context switches of the
phase's process per unit of work (``getrusage``). The quiet units are only as quiet as the
machine: read the ratios with the load column.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

PHASES = ("materialize", "evaluate", "train")
# Training is timed through the loop, prefetch thread included: a second thread of torch
# work next to the step is part of what a busy CPU does to it.
TRAIN_STEPS_PER_UNIT = 5
TABLE_COLUMNS = (
    "phase", "teacher_thread", "predict_streams", "images", "threads", "wait_policy", "load", "quiet_s", "loaded_s", "slowdown", "fair_slowdown",
    "quiet_nvcsw", "loaded_nvcsw", "loaded_nivcsw", "loadavg",
)  # fmt: skip
CSV_COLUMNS = (
    *TABLE_COLUMNS, "units", "cpu", "torch", "quiet_times_s",
    "loaded_times_s", "error",
)  # fmt: skip
# The worker's OpenMP variables per policy; the parent passes on no GOMP_SPINCOUNT of its own.
WAIT_POLICIES = {
    "brief": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"},
    "default": {"OMP_WAIT_POLICY": ""},
}


def _policy_env(policy: str) -> dict[str, str] | None:
    """The worker's OpenMP variables for ``policy``: a name of ``WAIT_POLICIES`` or
    ``spin<N>`` (sleep after N spin rounds, between ``passive``'s 0 and ``brief``'s 1000)."""
    if policy in WAIT_POLICIES:
        return WAIT_POLICIES[policy]
    if (match := re.fullmatch(r"spin(\d+)", policy)) is not None:
        return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": match.group(1)}
    return None


# Each load prints a line once it is busy, so that no unit times its start-up.
LOADS = {
    "spin": "print('busy', flush=True)\nwhile True: pass",
    "torch": (
        "import torch\na = torch.randn(512, 512)\nprint('busy', flush=True)\n"
        "while True:\n    a = (a @ a).tanh_()"
    ),
}
# Seconds the resumed load runs before a loaded unit starts (its threads back on the cores).
LOAD_SETTLE_S = 0.5


# --------------------------------------------------------------------------- worker


def _phase(
    name: str, train_steps: int, teacher_thread: str = "on", streams: str = "auto", images: int = 4
) -> Any:
    """One unit of the phase's work, as a callable."""
    import torch
    import train_step

    from hrda_kedro.hrda.image_streams import auto_streams, map_in_streams
    from hrda_kedro.hrda.inference import predict_full_image, predict_full_image_branches
    from hrda_kedro.hrda.model_config import SlidingWindows

    if name == "train":
        cfg = {
            **train_step.DEFAULTS,
            "context": (256, 256),
            "detail": (128, 128),
            "channels_last": False,
            "teacher_thread": teacher_thread,
        }
        trainer = train_step.uda_trainer(cfg, "uda_hrda", torch.device("cpu"), None)

        def train() -> None:
            # The loop stops at config.iterations: move it on by one unit of steps.
            end = trainer.iteration + train_steps
            trainer.config = dataclasses.replace(trainer.config, iterations=end)
            trainer.run()

        return train

    cfg = {**train_step.DEFAULTS, "detail": (128, 128)}
    model = train_step._model(cfg, "hrda").eval()
    inputs = [
        torch.randn(1, 3, 256, 512, generator=torch.Generator().manual_seed(i))
        for i in range(images)
    ]
    windows = SlidingWindows((256, 256), (128, 128), batch_size=4)
    count = (
        auto_streams(torch.device("cpu"), torch.get_num_threads())
        if streams == "auto"
        else int(streams)
    )

    def materialize(image: torch.Tensor) -> None:
        logits = predict_full_image(model, image, windows)
        confidence, label = torch.softmax(logits, dim=1).max(dim=1)
        label.to(torch.uint8).numpy()
        (confidence * 255).round().to(torch.uint8).numpy()

    def evaluate(image: torch.Tensor) -> None:
        branches = predict_full_image_branches(model, image, windows)
        for logits in branches.values():
            logits.argmax(dim=1)

    per_image = {"materialize": materialize, "evaluate": evaluate}[name]
    return lambda: list(map_in_streams(per_image, inputs, count))


def _signal_load(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, sig)


def _timed_unit(unit: Any) -> tuple[float, int, int]:
    """Seconds of one unit, and its voluntary and involuntary context switches."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    tic = time.perf_counter()
    unit()
    seconds = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_SELF)
    return seconds, after.ru_nvcsw - before.ru_nvcsw, after.ru_nivcsw - before.ru_nivcsw


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Alternate quiet and loaded units; the paused load processes are ``cfg["load_pids"]``."""
    common.apply_host_memory("keep")
    common.set_threads(cfg["threads"])
    unit = _phase(
        cfg["phase"], cfg["train_steps"], cfg["teacher_thread"], cfg["streams"], cfg["images"]
    )
    pids = cfg["load_pids"]
    for _ in range(cfg["warmup"]):
        unit()
    runs: dict[str, list[tuple[float, int, int]]] = {"quiet": [], "loaded": []}
    for _ in range(cfg["repeats"]):
        runs["quiet"].append(_timed_unit(unit))
        _signal_load(pids, signal.SIGCONT)
        try:
            time.sleep(LOAD_SETTLE_S)
            runs["loaded"].append(_timed_unit(unit))
        finally:
            _signal_load(pids, signal.SIGSTOP)
    out: dict[str, Any] = common.machine_info("cpu")
    for mode, measured in runs.items():
        times, voluntary, involuntary = zip(*measured, strict=True)
        out[f"{mode}_times_s"] = list(times)
        out[f"{mode}_nvcsw"] = sum(voluntary) / len(measured)
        out[f"{mode}_nivcsw"] = sum(involuntary) / len(measured)
    return out


# --------------------------------------------------------------------------- parent


def _start_load(kind: str, count: int) -> list[subprocess.Popen]:
    """``count`` load processes, each busy, then paused until a worker resumes them."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", LOADS[kind]],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(count)
    ]
    for process in processes:
        if process.stdout is None or process.stdout.readline().strip() != "busy":
            _stop_load(processes)
            raise SystemExit(f"the {kind} load process did not start")
        process.send_signal(signal.SIGSTOP)
    return processes


def _stop_load(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()  # SIGKILL ends a stopped process too
    for process in processes:
        process.wait()


def _load_threads(kind: str, count: int) -> int:
    return count * (1 if kind == "spin" else os.cpu_count() or 1)


def _fair_slowdown(threads: int, competing: int) -> float:
    cores = os.cpu_count() or 1
    threads = threads or cores
    quiet = min(threads, cores)
    loaded = min(threads, cores * threads / (threads + competing))
    return quiet / loaded


def _row(
    args: argparse.Namespace,
    phase: str,
    threads: int,
    policy: str,
    competing: int,
    result: dict[str, Any],
) -> dict[str, Any]:
    """One table row from a worker's alternating quiet and loaded units."""
    row: dict[str, Any] = {
        "phase": phase,
        "threads": threads or os.cpu_count(),
        "wait_policy": policy,
        "load": f"{args.load} {args.load_kind} ({competing} threads)",
        "fair_slowdown": _fair_slowdown(threads, competing),
        "units": args.repeats,
        "loadavg": f"{os.getloadavg()[0]:.1f}",
    }
    if "error" in result:
        return {**row, "error": result["error"]}
    quiet, loaded = result["quiet_times_s"], result["loaded_times_s"]
    row["quiet_s"] = common.median(quiet)
    row["loaded_s"] = common.median(loaded)
    row["slowdown"] = row["loaded_s"] / row["quiet_s"]
    row["quiet_nvcsw"] = result["quiet_nvcsw"]
    row["loaded_nvcsw"] = result["loaded_nvcsw"]
    row["loaded_nivcsw"] = result["loaded_nivcsw"]
    row["quiet_times_s"] = ";".join(f"{t:.4f}" for t in quiet)
    row["loaded_times_s"] = ";".join(f"{t:.4f}" for t in loaded)
    return {**row, "cpu": result["cpu"], "torch": result["torch"]}


def _parser() -> argparse.ArgumentParser:
    parser = common.argument_parser(
        "Slowdown of each phase next to a competing CPU load, against the quiet run."
    )
    parser.add_argument(
        "--phases",
        type=common.comma_list_of(PHASES),
        default=",".join(PHASES),
        help="comma list of " + ", ".join(PHASES),
    )
    parser.add_argument(
        "--threads",
        type=common.comma_list_of(str.isdigit, "integers >= 0 (0: torch's default)"),
        default="0",
        help="comma list of torch thread counts (0: torch's default)",
    )
    parser.add_argument(
        "--wait-policy",
        type=common.comma_list_of(
            lambda policy: _policy_env(policy) is not None, "brief | passive | spin<N> | default"
        ),
        default="brief",
        dest="wait_policy",
        help="comma list of OpenMP wait policies: brief (the project's 1000-round spin), "
        "passive (sleep at once), spin<N> (sleep after N spin rounds), default (libgomp's ~3 ms spin)",
    )
    parser.add_argument("--load", type=int, default=2, help="competing processes")
    parser.add_argument("--load-kind", choices=sorted(LOADS), default="torch", dest="load_kind")
    parser.add_argument("--repeats", type=int, default=5, help="timed units per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed units first")
    parser.add_argument(
        "--train-steps",
        type=int,
        default=TRAIN_STEPS_PER_UNIT,
        dest="train_steps",
        help="self-training steps per unit of the train phase",
    )
    parser.add_argument(
        "--predict-streams",
        type=common.comma_list_of(
            lambda streams: streams == "auto" or streams.isdigit() and int(streams) >= 1,
            "auto | integers >= 1",
        ),
        default="auto",
        dest="predict_streams",
        help="comma list of 1 | N | auto: images the materialize and evaluate phases compute at "
        "once (runtime.predict_streams, the project's default: auto)",
    )
    parser.add_argument(
        "--images", type=int, default=4, help="images per unit of the predicting phases"
    )
    parser.add_argument(
        "--teacher-thread",
        type=common.comma_list_of(("on", "off")),
        default="on",
        dest="teacher_thread",
        help="on | off | on,off: the train phase's EMA teacher in a thread of its own beside the "
        "source pass (runtime.teacher_thread, the project's default: on)",
    )
    common.add_worker_options(parser, timeout=1800, timeout_help="seconds per worker")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(_parser(), argv, worker)
    phases = args.phases
    competing = _load_threads(args.load_kind, args.load)
    rows = []
    info: dict[str, Any] = {}
    policies = args.wait_policy
    os.environ.pop("GOMP_SPINCOUNT", None)  # each policy sets its own (see WAIT_POLICIES)
    modes = args.teacher_thread
    streams = args.predict_streams
    settings = [
        (threads, phase, policy, mode)
        for threads in (int(t) for t in args.threads)
        for phase in phases
        for policy in policies
        for mode in (modes if phase == "train" else streams)
    ]
    load = _start_load(args.load_kind, args.load)
    try:
        for threads, phase, policy, mode in settings:
            cfg = {"phase": phase, "threads": threads, "repeats": args.repeats,
                   "warmup": args.warmup, "train_steps": args.train_steps,
                   "teacher_thread": mode, "streams": mode, "images": args.images,
                   "load_pids": [p.pid for p in load]}  # fmt: skip
            result = common.run_worker(Path(__file__), cfg, args.timeout, _policy_env(policy))
            _signal_load([p.pid for p in load], signal.SIGSTOP)  # a killed worker's load
            row = _row(args, phase, threads, policy, competing, result)
            row["teacher_thread"] = mode if phase == "train" else ""
            row["predict_streams"] = "" if phase == "train" else mode
            row["images"] = "" if phase == "train" else args.images
            info = result if "error" not in result else info
            rows.append(row)
    finally:
        _stop_load(load)
    out = args.out or common.RESULTS_DIR / "busy_cpu.csv"
    title = (
        f"Slowdown next to {args.load} competing {args.load_kind} processes\n"
        f"machine: {info.get('cpu', '?')} | torch {info.get('torch', '?')} | "
        f"{datetime.now():%Y-%m-%d %H:%M}"
    )
    notes = [
        f"ERROR {r['phase']} threads {r['threads']}: {r['error']}" for r in rows if "error" in r
    ]
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out, notes)
    return common.exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
