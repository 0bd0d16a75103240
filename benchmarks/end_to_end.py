"""Wall time of ``kedro run --pipeline=uda`` (ingestion, warmup, self-training, evaluation).

By default the run happens in a *fresh* project folder: a temporary directory holding a
copy of ``conf/``, ``pyproject.toml`` and ``src/`` and an empty ``data/`` tree,
so nothing is reused (no drawn benchmark, no ingestion cache, no in-training checkpoint
to resume from) and the repository's own ``data/`` is left alone. ``--in-place`` runs in
the repository instead (a second run then mostly resumes and skips: not a benchmark).

The wall time is measured around the ``kedro run`` subprocess (interpreter start and
imports included). Every output line is time-stamped as it arrives, and the time between
consecutive ``Running node:`` lines gives a per-node breakdown (the default runner is
sequential). Peak memory is the largest resident set of the finished ``kedro run``
process (``getrusage(RUSAGE_CHILDREN).ru_maxrss``; this parent never imports torch before
the run, so the high-water mark a child inherits across ``fork`` + ``exec`` is small).
Goal: at most 15 minutes on the machine at hand.

What the run scored is saved beside the timing: the mIoU table and the per-class IoU the
run's evaluation wrote (``data/08_reporting``), joined per target, model and prediction, as
``<out>_iou.csv``, with the final figures printed under the table. A run is thus one
command from its wall time to its numbers.

The fresh project is removed at the end, also when the script is stopped (Ctrl-C, SIGTERM),
unless ``--keep`` is given; after a failed run it is kept, for the ``info.log`` that
``kedro run``'s error names.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

logger = logging.getLogger(__name__)

DATA_LAYERS = (
    "01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
    "07_model_output", "08_reporting",
)  # fmt: skip
GOAL_S = 15 * 60
REPORTS = Path("data") / "08_reporting"
SCORE_KEYS = ("target", "model", "prediction")
SMALL_CLASSES = ("pole", "traffic light", "traffic sign", "person", "rider")
# `python -m kedro` names itself "python -m kedro.python -m kedro" in click's usage lines
# (Kedro sets argv[0] to "python -m kedro", click adds the module again); run Kedro's entry
# point under the name a user types instead.
KEDRO = ("-c", "import sys; from kedro.framework.cli import main; sys.argv[0] = 'kedro'; main()")
# After the parent is stopped: how long the run may take to stop on its own (a signal to the
# whole process group reached it too) before it is sent SIGTERM, then SIGKILL.
STOP_GRACE_S = 10.0
RUN_COLUMNS = ("started", "pipeline", "params", "env")
NODE_RE = re.compile(r"Running node: ([^\s(\[:]+)")
TABLE_COLUMNS = ("item", "seconds", "share")
CSV_COLUMNS = (
    "item", "seconds", "share", "peak_rss_mb", "pipeline", "params", "env", "fresh", "rc",
    "device", "cpu", "gpu", "torch", "omp_threads", "started",
)  # fmt: skip


def fresh_project(root: Path) -> Path:
    """A throw-away copy of the project: config, metadata, code, empty data tree."""
    project = root / "project"
    project.mkdir()
    shutil.copytree(common.REPO_ROOT / "conf", project / "conf")
    shutil.copy2(common.REPO_ROOT / "pyproject.toml", project / "pyproject.toml")
    # Kedro resolves src/ and requires it inside the project: copy it (no symlink).
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(common.REPO_ROOT / "src", project / "src", ignore=ignore)
    for layer in DATA_LAYERS:
        (project / "data" / layer).mkdir(parents=True)
    return project


def run_kedro(
    project: Path,
    kedro_args: list[str],
    timeout: float,
    log_path: Path,
    echo: bool,
    threads: int = 0,
) -> tuple[int, float, list[tuple[float, str]]]:
    """Run ``kedro run`` in ``project``; returns rc, wall seconds and time-stamped lines.
    Stopped itself (SIGTERM, Ctrl-C), it stops the run before its folder is removed."""
    cmd = [sys.executable, *KEDRO, "run", *kedro_args]
    # A wide console keeps rich from wrapping node names onto the next log line.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    lines: list[tuple[float, str]] = []
    tic = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                now = time.perf_counter() - tic
                lines.append((now, line.rstrip("\n")))
                log.write(f"{now:9.2f} {line}")
                if echo:
                    sys.stderr.write(line)
                if now > timeout:
                    proc.kill()
                    break
            rc = proc.wait()
        finally:
            _stop(proc)
    return rc, time.perf_counter() - tic, lines


def _stop(proc: subprocess.Popen) -> None:
    """End ``proc`` if it still runs: wait for it to stop on its own, then SIGTERM (the
    project's run cleans up on it), then SIGKILL."""
    for send in (None, proc.terminate, proc.kill):
        if proc.poll() is not None:
            return
        if send is not None:
            send()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE_S)


def _raise_system_exit(signum: int, _frame: Any) -> None:
    """Once: ``timeout`` signals the script twice (itself, then its process group), and a
    second SystemExit would cut short the wait for the run to stop before its folder goes."""
    signal.signal(signum, signal.SIG_IGN)
    logger.warning("stopped by signal %d; cleaning up", signum)
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM (``timeout``, a scheduler, ``kill``) ends the script as Ctrl-C does, through
    its ``finally`` blocks: Python's default would leave the temporary project behind."""
    previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def node_times(lines: list[tuple[float, str]], wall: float) -> list[tuple[str, float]]:
    starts = []
    for i, (t, text) in enumerate(lines):
        if "Running node:" not in text:
            continue
        match = NODE_RE.search(text)
        if match is None and i + 1 < len(lines):  # name wrapped onto the next line
            match = re.search(r"^\s*(?:\S+\s+)?([A-Za-z_][\w.]*)", lines[i + 1][1])
        starts.append((t, match.group(1).rstrip(":") if match else "?"))
    out = []
    for i, (t, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else wall
        out.append((name, end - t))
    return out


def _saved_by_run(project: Path, name: str, since: float) -> Path | None:
    """The newest version of the versioned report ``name`` written at or after ``since``
    (an in-place run's folder also holds earlier runs' versions)."""
    versions = [
        path
        for path in (project / REPORTS / name).glob(f"*/{name}")
        if path.stat().st_mtime >= since
    ]
    return max(versions, key=lambda path: path.parent.name) if versions else None


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def run_scores(project: Path, since: float) -> list[dict[str, str]]:
    """The run's mIoU table joined with its per-class IoU, a row per target, model and
    prediction; empty when the run evaluated nothing (another pipeline, a failed run)."""
    miou = _saved_by_run(project, "miou_table.csv", since)
    per_class = _saved_by_run(project, "per_class_iou.csv", since)
    if miou is None or per_class is None:
        return []
    ious = {tuple(row[k] for k in SCORE_KEYS): row for row in _read_rows(per_class)}
    return [{**row, **ious.get(tuple(row[k] for k in SCORE_KEYS), {})} for row in _read_rows(miou)]


def _percent(fraction: str) -> str:
    """A stored IoU (a fraction) in % with one decimal; blank where it is blank or NaN
    (a class absent from the evaluated images)."""
    try:
        value = 100 * float(fraction)
    except ValueError:
        return ""
    return "" if math.isnan(value) else f"{value:.1f}"


def score_lines(scores: list[dict[str, str]]) -> list[str]:
    """The fused target-val figures in %: mIoU, the small-class mean and each small class."""
    columns = ("model", "miou", "small_class_miou", *SMALL_CLASSES)
    rows = [
        {c: row[c] if c == "model" else _percent(row.get(c, "")) for c in columns}
        for row in scores
        if row.get("target") == "target_val" and row.get("prediction") == "fused"
    ]
    if not rows:
        return []
    table = common.format_table(rows, columns)
    return ["", "target-val, fused prediction, IoU in %:", *table.splitlines()]


def save_scores(scores: list[dict[str, str]], run: dict[str, Any], timing_csv: Path) -> Path:
    """``<timing csv stem>_iou.csv``: every score row, prefixed with what identifies the run."""
    path = timing_csv.with_name(f"{timing_csv.stem}_iou.csv")
    columns = [*RUN_COLUMNS, *dict.fromkeys(key for row in scores for key in row)]
    return common.write_csv(path, [{**run, **row} for row in scores], columns)


def params_arg(text: str) -> str:
    """An argparse ``type`` for ``--params``: the text for ``kedro run``, once its own
    option has read it (a bad one is one line at once, not a failed run minutes later)."""
    common.kedro_params_arg(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(
        "Time `kedro run --pipeline=uda` end to end, by default in a fresh copy "
        "of the project with an empty data folder."
    )
    parser.add_argument("--pipeline", default="uda")
    parser.add_argument("--params", type=params_arg, default="",
                        help="passed to kedro run --params, e.g. "
                        "'warmup.iterations=2,self_training.iterations=2' for a smoke run")  # fmt: skip
    parser.add_argument("--env", default="", help="kedro --env")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--fresh", action="store_true", default=True,
                       help="fresh temporary project with an empty data/ (default)")  # fmt: skip
    where.add_argument("--in-place", action="store_false", dest="fresh",
                       help="run in the repository itself, reusing its data/")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the fresh project folder")
    parser.add_argument("--device", default="auto",
                        help="recorded in the CSV; set runtime.device via --params to force it")  # fmt: skip
    parser.add_argument("--echo", action="store_true", help="stream kedro's output to stderr")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS/MKL_NUM_THREADS for the run (0: torch's default); "
                        "on a shared, oversubscribed CPU 1 can be several times faster")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=3 * 3600)
    parser.add_argument(
        "--out",
        type=Path,
        help="CSV path (default: benchmarks/results/end_to_end_<pipeline>_<device>[_params]_<start time>.csv)",
    )
    args = parser.parse_args(argv)

    kedro_args = [f"--pipeline={args.pipeline}"]
    if args.params:
        kedro_args.append(f"--params={args.params}")
    if args.env:
        kedro_args.append(f"--env={args.env}")
    started = datetime.now()
    # Reports saved from here on are this run's; a second of slack, as file times come from
    # a coarser clock than time.time().
    since = time.time() - 1.0
    tmp = Path(tempfile.mkdtemp(prefix="hrda-e2e-"))
    rc = None
    with _sigterm_exits():
        try:
            project = fresh_project(tmp) if args.fresh else common.REPO_ROOT
            log_path = tmp / "kedro_run.log"
            rc, wall, lines = run_kedro(
                project, kedro_args, args.timeout, log_path, args.echo, args.threads
            )
            peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            results_log = common.RESULTS_DIR / "end_to_end_last_run.log"
            common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log_path, results_log)
            scores = run_scores(project, since)
        finally:
            # A failed run's project is kept: kedro's error names the info.log in it.
            kept = args.keep or (args.fresh and rc not in (None, 0))
            if not kept:
                shutil.rmtree(tmp, ignore_errors=True)
    device = args.device
    try:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a project dependency
        pass
    info = common.machine_info(device)
    base: dict[str, Any] = {
        "pipeline": args.pipeline, "params": args.params, "env": args.env, "fresh": args.fresh,
        "rc": rc, "device": device, **info, "omp_threads": args.threads or "default",
        "started": f"{started:%Y-%m-%d %H:%M:%S}",
    }  # fmt: skip
    rows = [{**base, "item": f"kedro run --pipeline={args.pipeline} (total)", "seconds": wall,
             "share": 1.0, "peak_rss_mb": peak_rss_mb,
             **({"error": f"kedro run exited with {rc}"} if rc else {})}]  # fmt: skip
    nodes = node_times(lines, wall)
    if nodes:
        startup = wall - sum(seconds for _, seconds in nodes)
        rows.append({**base, "item": "  startup (interpreter, imports, catalog)",
                     "seconds": startup, "share": startup / wall})  # fmt: skip
    rows += [
        {**base, "item": f"  node {name}", "seconds": seconds, "share": seconds / wall}
        for name, seconds in nodes
    ]
    # Stamped with the start time: a new run never overwrites a recorded (committed) result.
    name = (
        f"end_to_end_{common.slug(args.pipeline)}_{device}"
        + ("_params" if args.params else "")
        + f"_{started:%Y%m%d-%H%M%S}"
    )
    out = args.out or common.RESULTS_DIR / f"{name}.csv"
    title = (
        f"End to end: kedro run --pipeline={args.pipeline} {'(fresh data dir)' if args.fresh else '(in place)'}"
        f"{' --params=' + args.params if args.params else ''}\n"
        f"machine: {common.machine_label(info)} | torch {info['torch']} | {started:%Y-%m-%d %H:%M}"
    )
    verdict = "met" if rc == 0 and wall <= GOAL_S else "NOT met"
    notes = [
        "",
        f"exit code {rc}; wall {wall:.1f} s = {wall / 60:.2f} min; goal <= 15 min: {verdict}; "
        f"peak memory {peak_rss_mb:.0f} MB",
        f"log: {results_log}" + (f"; project kept at {tmp / 'project'}" if kept else ""),
    ]
    if rc != 0:
        notes.append("last output lines (kedro's full traceback: info.log in the project):")
        notes += [f"  {text}" for _, text in lines[-15:]]
    notes += score_lines(scores)
    if scores:
        notes.append(f"scores saved: {save_scores(scores, base, out)}")
    common.emit(title, rows, TABLE_COLUMNS, CSV_COLUMNS, out, notes)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
