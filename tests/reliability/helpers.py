"""Tiny throw-away Kedro projects, `kedro run` in and out of process, and file snapshots.

Every reliability test works in a copy of the project under ``tmp_path`` (pyproject,
``conf/base``, ``conf/logging.yml``, an empty ``src``: the package itself is installed), with
parameters shrunk so that a whole ``uda`` run takes seconds on a shared 2-core CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from PIL import Image

from hrda_kedro.hrda.checkpoint import load_checkpoint
from hrda_kedro.run_lock import LOCK_FILE, OUTPUTS_LOCK_FILE

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("fault_driver.py")

# Every subprocess computes with one thread: deterministic, and frugal on a shared machine.
RUN_ENV = {
    "KEDRO_DISABLE_TELEMETRY": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "COLUMNS": "250",  # rich wraps at the terminal width; long messages stay on one line
}


def _shrink(conf: Path) -> None:
    """The project's own parameter files, with sizes a CPU runs in seconds."""

    def edit(name: str, change: Callable[[dict[str, Any]], None]) -> None:
        path = conf / name
        params = yaml.safe_load(path.read_text())
        change(params)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def ingestion(p: dict[str, Any]) -> None:
        p["ingestion"].update(workers=1, samples_per_domain=1)
        p["ingestion"]["embedded"].update(
            height=64, width=128, sizes={"source_train": 4, "target_train": 3, "target_val": 2}
        )

    def model(p: dict[str, Any]) -> None:
        p["model"]["network"].update(
            encoder="mit-nano", decoder_embed_dim=16, attention_embed_dim=16
        )
        p["model"]["hrda"].update(context_crop=[64, 64], detail_crop=[32, 32])

    def training(t: dict[str, Any], iterations: int) -> None:
        t.update(
            iterations=iterations,
            source_batch_size=1,
            target_batch_size=1,
            checkpoint_every=2,
            log_every=1,
        )
        t["optimizer"]["warmup_iters"] = 1
        t["rare_class_sampling"].update(min_pixels=20, reference_size=None)

    def self_training(p: dict[str, Any]) -> None:
        training(p["self_training"], 3)
        p["self_training"]["rounds"] = 2
        p["self_training"]["pseudo_labels"].update(
            margins=[2, 4, 2, 2], margins_reference_size=None
        )

    def evaluation(p: dict[str, Any]) -> None:
        p["evaluation"]["progress_bar"] = False
        if "qualitative_images" in p["evaluation"]:
            p["evaluation"]["qualitative_images"] = 1

    edit("parameters_ingestion.yml", ingestion)
    edit("parameters_model.yml", model)
    edit("parameters_warmup.yml", lambda p: training(p["warmup"], 6))
    edit("parameters_self_training.yml", self_training)
    edit("parameters.yml", lambda p: p["runtime"].update(device="cpu", progress_bar=False))
    edit("parameters_evaluation.yml", evaluation)


def make_project(root: Path) -> Path:
    """A runnable tiny copy of the project at ``root`` (no data yet)."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / ".telemetry").write_text("consent: false\n")
    (root / "src").mkdir()  # Kedro requires the folder; the package is installed
    # Without the ablation study: its pipeline is built (and its variants parsed) whenever
    # any pipeline is, which would shadow the errors under test (see test_bad_inputs).
    shutil.copytree(
        REPO / "conf" / "base",
        root / "conf" / "base",
        ignore=shutil.ignore_patterns("parameters_ablations.yml"),
    )
    shutil.copy(REPO / "conf" / "logging.yml", root / "conf" / "logging.yml")
    (root / "conf" / "local").mkdir()
    _shrink(root / "conf" / "base")
    return root


def copy_project(source: Path, root: Path, in_progress: bool = False) -> Path:
    """A copy of a project with what it has written so far; the in-training checkpoints
    (two thirds of the bytes) only if asked for."""
    ignored = ["info.log", "*.out", *([] if in_progress else ["in_progress"])]
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(*ignored))
    return root


def untracked(project: Path, pipeline: str) -> None:
    """``pipeline`` runs without experiment tracking (with the ``mlflow`` extra, the tracking
    store is a file too: under a full disk it would be the first write that fails)."""
    conf = yaml.safe_load((project / "conf" / "base" / "mlflow.yml").read_text())
    conf["tracking"]["disable_tracking"] = {"pipelines": [pipeline]}
    (project / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(conf))


def kedro(
    project: Path, *args: str, fault: str | None = None, wait: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """``kedro run ARGS`` in ``project``, in its own process (through the fault driver if
    ``fault`` is given), with stdout and stderr together.

    ``wait=False`` returns the running process, for tests that kill it; its output goes to
    ``project/run-N.out`` (a pipe nobody reads would fill up and stall the run). ``cwd``: a
    subfolder of ``project`` to start in, as a user in ``notebooks/`` does.
    """
    env = {**os.environ, **RUN_ENV}
    command = [sys.executable, "-m", "kedro", "run", *args]
    if fault is not None:
        env.update(HRDA_FAULT=fault, HRDA_FAULT_MARKER=str(project / "fault.reached"))
        command = [sys.executable, str(DRIVER), "run", *args]
    if wait:  # a pipe: a file would count against the file-size cap of some faults
        return subprocess.run(
            command, cwd=cwd or project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, check=False,
        )  # fmt: skip
    log = project / f"run-{len(list(project.glob('run-*.out')))}.out"
    with log.open("w") as handle:
        return subprocess.Popen(
            command, cwd=cwd or project, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True
        )


def run_in_process(
    project: Path,
    pipeline: str,
    params: Mapping[str, Any] | None = None,
    tags: tuple[str, ...] = (),
) -> None:
    """What ``kedro run --pipeline=PIPELINE --params ... --tags ...`` does, in this process.

    The caller changes into ``project`` first: parameters hold paths relative to it.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=dict(params or {})) as session:
        session.run(pipeline_names=[pipeline], tags=tags or None)


def flat(text: str) -> str:
    """Whitespace collapsed, so that messages match however a console wrapped them."""
    return " ".join(text.split())


def final_error(output: str) -> str:
    """The last ``Type: message`` line block of a failed run's output, flattened."""
    matches = list(re.finditer(r"^(\w+(?:\.\w+)*(?:Error|Exception)): ", output, re.MULTILINE))
    assert matches, f"no exception in the output:\n{output[-3000:]}"
    return flat(output[matches[-1].start() :])


def assert_refused(project: Path, args: str, error: str) -> str:
    """``kedro run ARGS`` (split at spaces) exits with status 1, its last error matching the
    regex ``error``, and leaves every file under ``data/`` as it was; returns its output."""
    before = snapshot(project / "data")
    result = kedro(project, *args.split())
    assert result.returncode == 1, result.stdout[-3000:]
    message = final_error(result.stdout)
    assert re.match(error, message), message
    assert_unchanged(before, project / "data")
    return result.stdout


# --------------------------------------------------------------------------- files


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path; the run locks, which say
    who ran last rather than holding data, left out."""
    locks = {LOCK_FILE.name, OUTPUTS_LOCK_FILE.name}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in locks
    }


def assert_unchanged(before: dict[str, str], folder: Path) -> None:
    """Every file that was there is there with the same bytes, and nothing was added."""
    after = snapshot(folder)
    changed = sorted(k for k in before if after.get(k) != before[k])
    added = sorted(set(after) - set(before))
    assert not changed and not added, f"changed: {changed[:5]}, added: {added[:5]}"


def assert_kept(before: dict[str, str], folder: Path) -> None:
    """Every file that was there is there with the same bytes (new files are allowed)."""
    after = snapshot(folder)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"changed or lost: {changed[:5]}"


def assert_not_lost(before: dict[str, str], folder: Path) -> None:
    """Every file that was there is still there (reports a run rewrote may differ)."""
    lost = sorted(set(before) - set(snapshot(folder)))
    assert not lost, f"lost: {lost[:5]}"


def check_readable(folder: Path) -> int:
    """Open every file under ``folder`` by its type; returns how many were checked.

    A file under its real name that a crash truncated fails here. Hidden ``.*.tmp`` files
    are the atomic writers' temporaries: never read by anything.
    """
    count = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix == ".pt":
            load_checkpoint(path)
        elif suffix == ".csv":
            pd.read_csv(path)
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".png":
            with Image.open(path) as image:
                image.load()
        else:
            continue
        count += 1
    return count


def latest_version(dataset_folder: Path) -> Path:
    """The newest ``<folder>/<timestamp>/<name>`` of a versioned dataset."""
    versions = sorted(dataset_folder.glob(f"*/{dataset_folder.name}"))
    assert versions, f"no version in {dataset_folder}"
    return versions[-1]
