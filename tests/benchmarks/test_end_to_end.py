"""benchmarks/end_to_end.py: a timed run saves what it scored beside its wall time, and
only the reports this run wrote count."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.benchmarks import load_script

MIOU_HEADER = "target,model,prediction,classes,miou,pixel_accuracy,small_class_miou"
IOU_HEADER = "target,model,prediction,pole,traffic light,traffic sign,person,rider,car"


def _script():
    return load_script("end_to_end")


def _write_reports(project: Path, version: str, final_miou: float) -> None:
    """Kedro's versioned layout: <name>/<version>/<name>, as the evaluation pipeline saves."""
    reports = project / "data" / "08_reporting"
    for name, header, rows in (
        ("miou_table.csv", MIOU_HEADER, [
            "target_val,source_only,fused,all,0.25,0.7,0.1",
            f"target_val,round_2,fused,all,{final_miou},0.9,0.12",
            "target_val,round_2,context,all,0.35,0.9,0.11",
        ]),
        ("per_class_iou.csv", IOU_HEADER, [
            "target_val,source_only,fused,0.02,0.08,0.0,0.11,0.24,0.6",
            "target_val,round_2,fused,0.092,0.07,0.05,0.07,0.178,0.7",
            "target_val,round_2,context,0.09,0.06,0.04,0.07,0.17,0.7",
        ]),
    ):  # fmt: skip
        folder = reports / name / version
        folder.mkdir(parents=True)
        (folder / name).write_text("\n".join([header, *rows]) + "\n")


def test_a_run_saves_and_prints_its_scores_beside_its_wall_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    e2e = _script()
    monkeypatch.setattr(e2e.common, "RESULTS_DIR", tmp_path / "results")

    def fake_run(project: Path, kedro_args, timeout, log_path: Path, echo, threads=0):
        log_path.write_text("")
        _write_reports(project, "2026-12-03T13.23.40.904Z", 0.362)
        return (
            0,
            2.0,
            [(0.5, "INFO Running node: train_source_only"), (1.5, "INFO Running node: evaluate")],
        )

    monkeypatch.setattr(e2e, "run_kedro", fake_run)
    out = tmp_path / "results" / "timing.csv"
    assert e2e.main(["--params", "runtime.seed=2", "--out", str(out)]) == 0

    with (tmp_path / "results" / "timing_iou.csv").open(newline="") as handle:
        scores = list(csv.DictReader(handle))
    final = next(r for r in scores if r["model"] == "round_2" and r["prediction"] == "fused")
    assert final["params"] == "runtime.seed=2" and final["pipeline"] == "uda"
    assert final["miou"] == "0.362" and final["traffic sign"] == "0.05"
    assert {r["prediction"] for r in scores} == {"fused", "context"}
    printed = capsys.readouterr().out
    final_line = next(line for line in printed.splitlines() if line.startswith("round_2"))
    assert final_line.split() == ["round_2", "36.2", "12.0", "9.2", "7.0", "5.0", "7.0", "17.8"]
    assert out.exists()  # the timing table as before


def test_only_the_reports_this_run_wrote_count(tmp_path: Path) -> None:
    e2e = _script()
    _write_reports(tmp_path, "2026-12-01T10.00.00.000Z", 0.30)  # an earlier run's, in place
    hour_ago = time.time() - 3600
    for path in (tmp_path / "data" / "08_reporting").glob("*/*/*"):
        os.utime(path, (hour_ago, hour_ago))
    since = time.time() - 1.0
    assert e2e.run_scores(tmp_path, since) == []  # e.g. a failed run or another pipeline

    _write_reports(tmp_path, "2026-12-03T13.23.40.904Z", 0.362)
    final = [r for r in e2e.run_scores(tmp_path, since) if r["model"] == "round_2"]
    assert [r["miou"] for r in final] == ["0.362", "0.35"]
    assert final[0]["pole"] == "0.092"  # joined on target, model and prediction


def test_a_class_without_a_score_prints_blank() -> None:
    e2e = _script()
    row = {"target": "target_val", "model": "m", "prediction": "fused", "miou": "0.5",
           "small_class_miou": "nan", "pole": ""}  # fmt: skip
    line = e2e.score_lines([row])[-1]
    assert line.split() == ["m", "50.0"]


def test_a_failed_run_keeps_the_project_whose_log_its_error_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kedro run's error names ``<project>/info.log`` for the traceback: that file must
    still be there when the script has ended."""
    e2e = _script()
    monkeypatch.setattr(e2e.common, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(e2e.tempfile, "tempdir", str(tmp_path))
    named = []

    def failed_run(project: Path, kedro_args, timeout, log_path: Path, echo, threads=0):
        log_path.write_text("")
        (project / "info.log").write_text("Traceback (most recent call last): ...\n")
        named.append(project / "info.log")
        return 1, 2.0, [(1.0, f"ParameterError: ... Full traceback: {named[0]}")]

    monkeypatch.setattr(e2e, "run_kedro", failed_run)
    assert e2e.main(["--out", str(tmp_path / "results" / "timing.csv")]) == 1
    assert named[0].read_text().startswith("Traceback")
    assert f"project kept at {named[0].parent}" in capsys.readouterr().out


def test_bad_params_stop_before_the_project_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    e2e = _script()
    monkeypatch.setattr(e2e, "fresh_project", lambda root: pytest.fail("copied the project"))
    with pytest.raises(SystemExit) as stopped:
        e2e.main(["--params", "warmup", "--out", str(tmp_path / "timing.csv")])
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(
        ": error: argument --params: Invalid format of `params` option: "
        "Item `warmup` must contain a key and a value separated by `=`."
    )


def test_kedros_usage_lines_name_the_command_a_user_types(
    project_copy: Path, tmp_path: Path
) -> None:
    """Not ``python -m kedro.python -m kedro run --help``."""
    rc, _, lines = _script().run_kedro(project_copy, ["--bogus"], 120, tmp_path / "log", False)
    text = [line for _, line in lines]
    assert rc == 2
    assert "Usage: kedro run [OPTIONS]" in text and "Try 'kedro run --help' for help." in text


# The script in a fresh interpreter, its kedro run a stand-in (argv[3]) that writes its pid
# and sleeps: only the script can stop it (the test signals the script alone, not its
# process group).
_SIGTERMED = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.benchmarks import load_script
e2e = load_script("end_to_end")
e2e.STOP_GRACE_S = 0.5
sys.executable = sys.argv[3]
e2e.main(["--out", sys.argv[2]])
"""


def test_sigterm_removes_the_fresh_project_and_stops_the_run(tmp_path: Path) -> None:
    """``timeout``, a scheduler or ``kill`` end the script with SIGTERM: its ``finally``
    runs as on Ctrl-C, the run is stopped and the temporary project removed."""
    repo = Path(__file__).resolve().parents[2]
    pid_file = tmp_path / "run.pid"
    stand_in = tmp_path / "kedro_run.sh"
    stand_in.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    stand_in.chmod(0o755)
    script = subprocess.Popen(
        [sys.executable, "-c", _SIGTERMED, str(repo), str(tmp_path / "timing.csv"),
         str(stand_in)],
        cwd=repo, env={**os.environ, "TMPDIR": str(tmp_path)}, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        run_pid = int(pid_file.read_text())
        (project,) = tmp_path.glob("hrda-e2e-*/project")
        script.send_signal(signal.SIGTERM)
        _, stderr = script.communicate(timeout=60)
    finally:
        script.kill()  # only where the test failed before the script ended
    assert script.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert not project.parent.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(run_pid, 0)
