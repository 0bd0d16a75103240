"""Faults during `kedro run`: SIGKILL at three points, a diverging loss, a full disk.

A killed run must cost only the work since its last checkpoint: the next ``kedro run``
resumes and ends with bit-identical weights to an uninterrupted run (CPU, one thread), and
no file under a real name is ever truncated. The kill points are reached through
``fault_driver.py``, which parks the run at the exact point until it is killed, so no test
depends on timing.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import resource
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.io.core import DatasetError
from PIL import Image

from hrda_kedro.datasets.atomic_files import use_atomic_local_writes
from hrda_kedro.hrda.checkpoint import CheckpointError, load_checkpoint
from hrda_kedro.hrda.training.history import NonFiniteLossError
from tests.reliability.helpers import (
    assert_kept,
    assert_not_lost,
    assert_unchanged,
    check_readable,
    copy_project,
    final_error,
    flat,
    kedro,
    latest_version,
    make_project,
    run_in_process,
    snapshot,
    untracked,
)

MODELS = ("source_only", "round_1", "round_2")


def kill_at(project: Path, fault: str) -> str:
    """Start ``kedro run`` with ``fault``, SIGKILL it once it is parked there; its output."""
    marker = project / "fault.reached"
    marker.unlink(missing_ok=True)
    process = kedro(project, fault=fault, wait=False)
    while not marker.exists():
        assert process.poll() is None, f"the run ended before reaching {fault}"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    return sorted(project.glob("run-*.out"))[-1].read_text()


def model_file(project: Path, name: str) -> Path:
    return latest_version(project / "data" / "06_models" / name / "model.pt")


def test_killed_runs_resume_to_the_uninterrupted_result(reference: Path, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    # Only the models are compared: one image, one prediction per evaluation is enough.
    evaluation = {"predictions": ["fused"], "max_images": 1}
    (project / "conf" / "local" / "parameters.yml").write_text(
        yaml.safe_dump({"evaluation": evaluation})
    )
    data = project / "data"
    state = data / "06_models" / "in_progress" / "warmup" / "state.pt"

    # 1. Mid-step: inside warmup step 4 (checkpoints every 2 steps: iteration 2 is on disk).
    kill_at(project, "stop-in-step:4")
    assert load_checkpoint(state)["iteration"] == 2
    check_readable(data)

    # 2. Mid-checkpoint-write: the resumed run writes iteration 4's checkpoint; half of it
    # is on disk in the temporary file when the process dies.
    before = snapshot(data)
    output = kill_at(project, "stop-in-write:state.pt")
    assert "warmup: resuming at iteration 2" in flat(output)
    (partial,) = state.parent.glob(".state.pt.*.tmp")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(partial)
    assert load_checkpoint(state)["iteration"] == 2  # the previous one, whole
    assert snapshot(state.parent)["state.pt"] == before[str(state.relative_to(data))]
    assert_not_lost(before, data)
    check_readable(data)

    # 3. Between rounds: round 1's model is saved, the next node is about to read it.
    before = snapshot(data)
    output = kill_at(project, "stop-at-load:round_1")
    assert "warmup: resuming at iteration 2" in flat(output)
    assert load_checkpoint(model_file(project, "round_1"))["stage"] == "round_1"
    assert not (data / "06_models" / "round_2").exists()
    assert_not_lost(before, data)
    check_readable(data)

    # 4. The next run finishes, training nothing again that was already trained.
    result = kedro(project)
    assert result.returncode == 0, result.stdout[-5000:]
    log = flat(result.stdout)
    assert "warmup: resuming at iteration 6" in log and "round_1: resuming at iteration 3" in log
    for name in MODELS:
        expected = load_checkpoint(model_file(reference, name))
        resumed = load_checkpoint(model_file(project, name))
        for part in ("model", "teacher"):
            if expected[part] is None:
                assert resumed[part] is None
                continue
            assert expected[part].keys() == resumed[part].keys()
            for key, tensor in expected[part].items():
                assert torch.equal(tensor, resumed[part][key]), f"{name} {part} {key}"
    assert check_readable(data) > 0


@pytest.mark.usefixtures("one_thread")
def test_diverging_loss_stops_naming_iteration_and_term(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process: a loss that diverges needs no process of its own to stop a run."""
    project = copy_project(reference, tmp_path / "project")
    monkeypatch.chdir(project)
    before = snapshot(project / "data")
    params = {"warmup": {"optimizer": {"lr": 1e9}, "checkpoint_every": 1}}
    with pytest.raises(NonFiniteLossError) as info:
        run_in_process(project, "warmup", params)
    error = flat(str(info.value))
    found = re.match(
        r"warmup: loss term '(\w+)' is (-?inf|nan) at iteration (\d+); "
        r"stopped, the last checkpoint on disk is from before it",
        error,
    )
    assert found, error
    assert found[1] != "loss"  # the term that went bad, not the total
    state = load_checkpoint(project / "data" / "06_models" / "in_progress" / "warmup" / "state.pt")
    assert state["iteration"] == int(found[3]) - 1 >= 1  # the last good one is kept
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert_kept(before, project / "data")  # the earlier source-only model and reports


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    reference: Path, tmp_path: Path
) -> None:
    """Every write past 64 KiB fails (RLIMIT_FSIZE, see fault_driver): the first thing a
    re-run with another learning rate writes is its 5 MB in-training checkpoint."""
    project = copy_project(reference, tmp_path / "project", in_progress=True)
    untracked(project, "warmup")
    before = snapshot(project / "data")
    result = kedro(
        project,
        "--pipeline",
        "warmup",
        "--params",
        "warmup.optimizer.lr=0.001",
        fault="file-size:65536",
    )
    assert result.returncode == 1
    assert final_error(result.stdout).startswith(
        "OSError: [Errno 27] File too large: 'data/06_models/in_progress/warmup/state.pt'"
    ), final_error(result.stdout)
    assert_unchanged(before, project / "data")  # old state.pt whole, no temporary left


@pytest.mark.skipif(
    importlib.util.find_spec("kedro_mlflow") is None, reason="needs the mlflow extra"
)
def test_full_disk_with_tracking_stops_the_run_before_its_first_node(
    reference: Path, tmp_path: Path
) -> None:
    """With the ``mlflow`` extra the tracking store is the run's first write: a full disk
    stops the run there, before any work, and every output stays as it was."""
    project = copy_project(reference, tmp_path / "project", in_progress=True)
    before = snapshot(project / "data")
    result = kedro(project, "--pipeline", "warmup", fault="file-size:65536")
    assert result.returncode == 1
    assert "disk I/O error" in final_error(result.stdout), final_error(result.stdout)
    assert "Running node" not in result.stdout
    assert_unchanged(before, project / "data")


def test_full_disk_while_saving_a_report_keeps_the_previous_one(
    reference: Path, tmp_path: Path
) -> None:
    """Re-ingesting writes small files (under 16 KiB) and the 100+ KiB sample figure, whose
    write fails midway: the figure of the earlier run must stay as it was."""
    project = copy_project(reference, tmp_path / "project")
    untracked(project, "ingestion")
    figure = project / "data" / "08_reporting" / "ingestion_samples.png"
    before = figure.read_bytes()
    result = kedro(project, "--pipeline", "ingestion", fault="file-size:16384")
    assert result.returncode == 1
    error = final_error(result.stdout)
    assert re.match(
        r"DatasetError: ingestion_samples: Failed while saving data to dataset .*FigureDataset"
        r"\(filepath=.*"
        r"ingestion_samples\.png.* \[Errno 27\] File too large",
        error,
    ), error
    assert figure.read_bytes() == before
    assert not list(project.glob("data/**/.*.tmp"))
    check_readable(project / "data")


@pytest.mark.parametrize(
    ("name", "small", "big"),
    [
        ("miou_table", pd.DataFrame({"miou": [0.5]}), pd.DataFrame({"miou": range(9000)})),
        ("evaluation_summary", {"miou": 0.5}, {"miou": list(range(9000))}),
        ("source_only_history", pd.DataFrame({"loss": [1.0]}), pd.DataFrame({"loss": range(9000)})),
        ("round_1.pseudo_labels", {"a_label": Image.new("L", (4, 4))},
         {"a_label": Image.effect_noise((300, 300), 90)}),
        ("source_only_model", {"stage": "source_only", "model": {"w": torch.zeros(2)}},
         {"stage": "source_only", "model": {"w": torch.zeros(9000)}}),
    ],
)  # fmt: skip
def test_full_disk_while_saving_each_kind_of_output(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    small: Any,
    big: Any,
) -> None:
    """The project's own catalog entries (CSV, JSON, PNG partitions, checkpoint, versioned
    or not), saved once, then again with every write past 8 KiB failing."""
    monkeypatch.chdir(tmp_path)
    use_atomic_local_writes()  # what the project hook does for a kedro run
    config = OmegaConfigLoader(str(reference / "conf"), base_env="base", default_run_env="local")

    def catalog() -> DataCatalog:  # a new one per save: a new version for versioned entries
        return DataCatalog.from_config(config["catalog"])

    catalog().save(name, small)
    before = snapshot(tmp_path)
    with capped_file_size(8192), pytest.raises(DatasetError, match=r"\[Errno 27\] File too large"):
        catalog().save(name, big)
    assert_unchanged(before, tmp_path)
    loaded = catalog().load(name)
    if isinstance(loaded, pd.DataFrame):
        assert loaded.equals(small)
    elif name == "round_1.pseudo_labels":
        assert loaded["a_label"]().size == (4, 4)
    else:
        assert loaded["stage" if "stage" in loaded else "miou"] == next(iter(small.values()))


@contextmanager
def capped_file_size(size: int) -> Iterator[None]:
    """Writes past ``size`` bytes fail with EFBIG in this process (see fault_driver)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    logging.disable(logging.CRITICAL)  # log files may be over the cap already
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        logging.disable(logging.NOTSET)
        signal.signal(signal.SIGXFSZ, handler)
