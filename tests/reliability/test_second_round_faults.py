"""Second round of faults, and what a user reads when a run stops.

SIGTERM (a scheduler's time limit) and SIGKILL in the middle of drawing the benchmark, of
training and of saving a report set; a full disk while caching converted labels. Nothing
written before the fault may be lost, nothing half-written may be left behind, and a
report set mixed by a kill must never be read as one. Then the console: a bad parameter
prints its message and what to do, not a framed traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from hrda_kedro.data import DataError
from hrda_kedro.hrda.checkpoint import load_checkpoint
from tests.reliability.helpers import (
    assert_kept,
    assert_refused,
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
)
from tests.reliability.inputs import (
    gta,
)


def start_and_stop(project: Path, fault: str, args: tuple[str, ...], sig: int) -> int:
    """Start ``kedro run ARGS`` with ``fault``; send ``sig`` once it is parked; its status."""
    marker = project / "fault.reached"
    marker.unlink(missing_ok=True)
    process = kedro(project, *args, fault=fault, wait=False)
    while not marker.exists():
        assert process.poll() is None, f"the run ended before reaching {fault}"
        time.sleep(0.05)
    os.kill(process.pid, sig)
    if sig == signal.SIGTERM:
        time.sleep(0.5)
        (project / "fault.reached.release").write_text("")  # lets the parked thread go
    return process.wait(timeout=300)


def last_output(project: Path) -> str:
    return sorted(project.glob("run-*.out"))[-1].read_text()


def staging_folders(project: Path) -> list[Path]:
    return sorted(
        p for p in (project / "data").rglob(".*") if ".staging-" in p.name or ".old-" in p.name
    )


REDRAW = ("--pipeline", "ingestion", "--params", "ingestion.embedded.seed=5")
REDRAW_PARAMS = {"ingestion": {"embedded": {"seed": 5}}}  # the same, for run_in_process


def test_sigterm_while_drawing_the_benchmark(reference: Path, tmp_path: Path) -> None:
    """SIGTERM mid-draw: exit 143, the staging folder removed, the old benchmark kept."""
    project = copy_project(reference, tmp_path / "project")
    before = snapshot(project / "data")
    status = start_and_stop(project, "stop-in-draw", REDRAW, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, last_output(project)[-3000:]
    assert "Stopped by signal 15; cleaning up" in last_output(project)
    assert staging_folders(project) == []
    assert_unchanged(before, project / "data")


def test_sigkill_while_drawing_is_cleaned_up_by_the_next_run(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGKILL mid-draw leaves a staging folder (nothing can run); the next run (in this
    process: the clean-up is no matter of the process) removes it."""
    project = copy_project(reference, tmp_path / "project")
    before = snapshot(project / "data")
    status = start_and_stop(project, "stop-in-draw", REDRAW, signal.SIGKILL)
    assert status == -signal.SIGKILL
    left = staging_folders(project)
    assert len(left) == 1 and left[0].name.startswith(".embedded.staging-")
    assert_kept(before, project / "data")  # the abandoned folder is the only change
    monkeypatch.chdir(project)
    with caplog.at_level(logging.INFO, logger="hrda_kedro"):
        run_in_process(project, "ingestion", REDRAW_PARAMS)
    assert re.search(r"Removing .*\.embedded\.staging-\d+-\w+, left by a run that was stopped",
                     flat(caplog.text))  # fmt: skip
    assert staging_folders(project) == []
    assert check_readable(project / "data" / "01_raw") > 0


@pytest.mark.usefixtures("one_thread")
def test_sigterm_in_training_keeps_the_checkpoint_and_resumes(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The re-run is in this process, with one thread like the reference's process."""
    project = copy_project(reference, tmp_path / "project")
    status = start_and_stop(project, "stop-in-step:4", ("--pipeline", "warmup"), signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, last_output(project)[-3000:]
    state = load_checkpoint(project / "data" / "06_models" / "in_progress" / "warmup" / "state.pt")
    assert state["iteration"] == 2
    monkeypatch.chdir(project)
    with caplog.at_level(logging.INFO, logger="hrda_kedro"):
        run_in_process(project, "warmup")
    assert "warmup: resuming at iteration 2" in caplog.text
    model = "data/06_models/source_only/model.pt"
    ours = load_checkpoint(latest_version(project / model))["model"]
    theirs = load_checkpoint(latest_version(reference / model))["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_to_a_parallel_runs_main_process_stops_its_workers(
    reference: Path, tmp_path: Path, sig: int
) -> None:
    """``timeout``, ``docker stop`` and ``kill <pid>`` signal the main process alone: it
    waited for the worker's training node to end, which then saved its model."""
    project = copy_project(reference, tmp_path / "project")
    models = project / "data" / "06_models" / "source_only" / "model.pt"
    before = sorted(models.iterdir())
    args = ("--pipeline", "warmup", "--runner", "ParallelRunner")
    status = start_and_stop(project, "stop-in-step:4", args, sig)  # parks a worker
    output = last_output(project)
    assert status == 128 + sig, output[-3000:]
    assert flat(output).count(f"Stopped by signal {sig}") == 1
    assert sorted(models.iterdir()) == before


def test_ctrl_c_in_training_exits_with_the_signals_status_and_keeps_the_checkpoint(
    reference: Path, tmp_path: Path
) -> None:
    """Ctrl-C printed click's "Aborted!" and exited 1, as any failure does."""
    project = copy_project(reference, tmp_path / "project")
    status = start_and_stop(project, "stop-in-step:4", ("--pipeline", "warmup"), signal.SIGINT)
    output = last_output(project)
    assert status == 128 + signal.SIGINT, output[-3000:]
    assert "Stopped by signal 2 (Ctrl-C); cleaning up" in flat(output)
    assert "Aborted!" not in output and "Traceback" not in output
    state = load_checkpoint(project / "data" / "06_models" / "in_progress" / "warmup" / "state.pt")
    assert state["iteration"] == 2


def test_kill_between_two_report_saves_is_not_read_as_one_set(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed after the mIoU table and before per-class IoU: "latest" of each now comes from
    two runs. Redrawing the figures from them (``--tags reports``, here in this process)
    must stop and say so."""
    project = copy_project(reference, tmp_path / "project")
    reports = project / "data" / "08_reporting"
    status = start_and_stop(
        project, "stop-in-write:per_class_iou.csv", ("--pipeline", "evaluation"), signal.SIGKILL
    )
    assert status == -signal.SIGKILL
    tables = [
        latest_version(reports / n).parent.name for n in ("miou_table.csv", "per_class_iou.csv")
    ]
    assert tables[0] > tables[1], "the kill did not fall between the two saves"
    before = snapshot(project / "data")
    monkeypatch.chdir(project)
    with caplog.at_level(logging.INFO), pytest.raises(DataError) as info:
        run_in_process(project, "evaluation", tags=("reports",))
    message = flat(str(info.value))
    assert re.match(
        r"per_class_iou: the latest saved versions of the outputs saved together "
        r"come from different runs \(evaluation_summary \S+, miou_table \S+, per_class_iou \S+\): "
        r"a run stopped between two saves; expected one run's set",
        message,
    ), message
    assert "Running node" not in caplog.text
    assert_unchanged(before, project / "data")


def test_full_disk_while_caching_converted_labels_names_the_file(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GTA5 labels are converted to trainIds and cached; Pillow's ENOSPC names no file."""
    params = gta(trained, lambda root: None)
    real = Image.Image.save

    def save(image: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        if "trainid_labels" in str(fp):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    before = snapshot(trained / "data")
    with pytest.raises(OSError) as info:
        run_in_process(trained, "ingestion", params)
    assert info.value.errno == errno.ENOSPC
    assert re.search(r"cannot write the converted label \(No space left on device\): "
                     r"'.*trainid_labels/\.gta5-user data ü-\w+\.staging-\d+-\w+/labels/"
                     r"00001\.png'", str(info.value)), str(info.value)  # fmt: skip
    assert staging_folders(trained) == []
    assert_unchanged(before, trained / "data")


# --------------------------------------------------------------------------- the console


def test_cli_bad_parameter_prints_a_short_message(trained: Path) -> None:
    """The one real ``kedro run`` process of a bad parameter: exit status 1, data unchanged,
    no node run, a two-line message (tests/reliability/test_second_round.py checks the
    parameter messages in process)."""
    output = assert_refused(trained, "--params warmpu.iterations=2", "ParameterError")
    assert "Running node" not in output
    assert "Traceback" not in output and "╭" not in output
    tail = output.strip().splitlines()[-2:]
    assert tail[0].startswith(
        "ParameterError: parameter warmpu: unknown parameter group (did you mean 'warmup'?)"
    ), tail
    assert tail[1].startswith("What to do: fix this key in conf/<env>/parameters*.yml"), tail
    assert tail[1].endswith("info.log (or run with --verbose).")
    log = (trained / "info.log").read_text()
    assert "Traceback (most recent call last)" in log and "ParameterError: parameter warmpu" in log


@pytest.mark.parametrize(
    "text", ["warmup:\n  iterations: [6\n", "warmup:\n\titerations: 6\n"], ids=["bracket", "tab"]
)
def test_cli_yaml_syntax_error_prints_a_short_message(trained: Path, text: str) -> None:
    """A broken conf file surfaced as a 175-195 line framed traceback: the registry read the
    parameters before the run's own error handling."""
    (trained / "conf" / "local" / "parameters_broken.yml").write_text(text)
    output = assert_refused(
        trained, "--pipeline warmup", r"ParserError: Invalid YAML .*parameters_broken\.yml"
    )
    assert "Traceback" not in output and "╭" not in output
    assert "What to do: fix the YAML syntax of that file" in output


def test_cli_a_loss_that_diverges_prints_a_short_message(trained: Path) -> None:
    """NonFiniteLossError, the project's own, printed a 275-line traceback and no advice."""
    result = kedro(trained, "--pipeline", "warmup", "--params", "warmup.optimizer.lr=1e9")
    assert result.returncode == 1, result.stdout[-3000:]
    assert re.match(
        r"NonFiniteLossError: warmup: loss term '\w+' is (nan|inf|-inf) at iteration \d+",
        final_error(result.stdout),
    ), final_error(result.stdout)
    assert "Traceback" not in result.stdout and "╭" not in result.stdout
    assert "What to do: lower the stage's optimizer.lr" in flat(result.stdout)


def test_cli_missing_model_stops_before_any_node_naming_the_dataset(trained: Path) -> None:
    """A model version that was never saved (or a model not trained yet): the dataset, the
    folder and the saved versions in one line, before the first node."""
    args = "--pipeline evaluation --load-versions round_1.model:2020-01-01T00.00.00.000Z"
    output = assert_refused(trained, args, "MissingInputError")
    assert "Running node" not in output and "Traceback" not in output and "╭" not in output
    saved = latest_version(trained / "data" / "06_models" / "round_1" / "model.pt").parent.name
    assert re.match(
        r"MissingInputError: round_1\.model: \S+/round_1/model\.pt: no saved version "
        rf"'2020-01-01T00\.00\.00\.000Z' \(--load-versions\); saved: {saved}; made by "
        "kedro run --pipeline=self_training What to do: run the pipeline that makes it first",
        final_error(output),
    ), final_error(output)


def test_cli_unreadable_pretrained_weights_print_a_short_message(trained: Path) -> None:
    """Weights that exist but are not weights (found by the training node that reads them):
    two lines naming the file and the setting, not a 400-line traceback."""
    (trained / "mit_b0.pth").write_text("not weights")
    output = assert_refused(
        trained,
        "--pipeline warmup --params model.network.pretrained=mit_b0.pth",
        r"WeightsError: weights file \S*mit_b0\.pth cannot be read as a state dict",
    )
    assert "Traceback" not in output and "╭" not in output
    tail = output.strip().splitlines()[-1]
    assert tail.startswith("What to do: point model.network.pretrained"), tail


def test_cli_a_stage_run_before_the_one_it_needs_names_that_one(tmp_path: Path) -> None:
    """``kedro run --pipeline=warmup`` in a project that never ingested: one line, before
    the first node."""
    project = make_project(tmp_path / "fresh")
    output = assert_refused(project, "--pipeline warmup", "MissingInputError")
    assert "Running node" not in output and "Traceback" not in output and "╭" not in output
    assert re.match(
        r"MissingInputError: \w+: \S+/data/\S+\.csv not found; made by kedro run "
        r"--pipeline=ingestion( \(\d+ more inputs? not made yet\))? What to do: run the "
        "pipeline that makes it first",
        final_error(output),
    ), final_error(output)


def test_cli_under_torchrun_prints_how_to_launch(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``torchrun --nproc-per-node=2 kedro run``: each process stops at once, in two lines."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    output = assert_refused(trained, "--pipeline warmup", "LauncherError")
    assert "Running node" not in output and "Traceback" not in output
    tail = output.strip().splitlines()[-2:]
    assert re.match(r"LauncherError: .*torchrun.* start `kedro run` once per machine", tail[0])
    assert tail[1].startswith("What to do: start or restart `kedro run` on every machine"), tail


def test_cli_verbose_shows_the_traceback(trained: Path) -> None:
    result = kedro(trained, "--params", "warmpu.iterations=2", "--verbose")
    assert result.returncode == 1
    assert "Traceback" in result.stdout
    assert "ParameterError: parameter warmpu: unknown parameter group" in flat(result.stdout)


def test_cli_unknown_pipeline_lists_the_pipelines(trained: Path) -> None:
    result = kedro(trained, "--pipeline", "nosuch")
    assert result.returncode == 2
    assert (
        "Error: no pipeline named 'nosuch'; the pipelines are: ablations, evaluation, "
        "export, export_onnx, ingestion, predict, self_training, uda, warmup (default: uda)"
    ) in flat(result.stdout)


@pytest.mark.parametrize(
    ("versions", "message"),
    [  # Kedro printed "NoneType: None" for the first two and ran the third with the newest
        ("round_1.model", r"Expected the form of 'load_versions' to be 'dataset_name:YYYY-MM-DDThh"
         r"\.mm\.ss\.sssZ', found round_1\.model instead"),
        ("round_1.model:", r"Version string '' is not allowed"),
        ("round1.model:2020-01-01T00.00.00.000Z", r"no dataset named 'round1\.model' in the "
         r"pipeline evaluation; did you mean 'round_1\.model'"),
    ],
)  # fmt: skip
def test_cli_bad_load_versions_are_a_bad_option(trained: Path, versions: str, message: str) -> None:
    result = kedro(trained, "--pipeline", "evaluation", "--load-versions", versions)
    assert result.returncode == 2, result.stdout[-2000:]
    assert "Running node" not in result.stdout and "Traceback" not in result.stdout
    assert re.search(
        r"Error: Invalid value for '--load-versions'.*: " + message, flat(result.stdout)
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [  # each was a framed traceback of 60 to 100 lines
        (["--nodes", "evaluate_round1"], r"Invalid value for '--nodes': no node named "
         r"'evaluate_round1' in the pipeline uda; did you mean 'evaluate_round_1'"),
        (["--to-nodes", "train_source_onl"], r"Invalid value for '--to-nodes': no node named "
         r"'train_source_onl' in the pipeline uda; did you mean 'train_source_only'"),
        (["--runner", "FooRunner"], r"Invalid value for '--runner': no runner named 'FooRunner'"),
        (["--pipeline", "self_training", "--params", "self_training.rounds=0"],
         r"nothing to run: the pipeline self_training holds no node"),
    ],
)  # fmt: skip
def test_cli_options_that_select_nothing_are_a_usage_error(
    trained: Path, args: list[str], message: str
) -> None:
    result = kedro(trained, *args)
    assert result.returncode == 2, result.stdout[-2000:]
    assert "Traceback" not in result.stdout and "Running node" not in result.stdout
    assert re.search(r"Error: " + message, flat(result.stdout)), result.stdout[-2000:]


def test_cli_unknown_environment_lists_the_environments(trained: Path) -> None:
    result = kedro(trained, "--env", "nosuch")
    assert result.returncode == 2
    assert "Traceback" not in result.stdout
    assert re.search(
        r"Error: no environment named 'nosuch' \(no folder \S+/conf/nosuch\); the "
        r"environments are: local$",
        flat(result.stdout),
    ), result.stdout[-2000:]


def test_cli_missing_data_folder_says_where_to_point(trained: Path) -> None:
    """Not skip_bad_files: a folder that is not there is data to fetch or a root to fix."""
    output = assert_refused(
        trained, "--pipeline predict --params predict.input_dir=nowhere", "MissingFolderError"
    )
    assert re.match(
        r"MissingFolderError: \S+/nowhere: folder not found; expected a folder of images to "
        r"segment \(parameter predict\.input_dir\) What to do: put the data there, or point "
        "the setting",
        final_error(output),
    ), final_error(output)


def test_cli_prints_no_warning_before_the_first_node(trained: Path) -> None:
    """Third-party warnings (with the mlflow extra, more of them) do not precede the run."""
    result = kedro(trained, "--pipeline", "ingestion")
    assert result.returncode == 0, result.stdout[-2000:]
    before_first_node = result.stdout.split("Running node", 1)[0]
    assert "WARNING" not in before_first_node, before_first_node
