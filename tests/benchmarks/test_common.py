"""The benchmarks' shared command line and worker pooling (benchmarks/_common.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _common as common  # noqa: E402 - the benchmarks folder is not a package

PRESETS = {"tiny": {"encoder": "mit-nano", "steps": 5}}
DEFAULTS = {"encoder": "mit-b5", "steps": 10, "batch": 2}


def _parser():
    parser = common.argument_parser("test")
    common.add_preset_option(parser, PRESETS, "tiny: small")
    parser.add_argument("--encoder")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int)
    common.add_worker_options(parser)
    return parser


def test_command_line_beats_the_preset_which_beats_the_defaults() -> None:
    args = _parser().parse_args(["--preset", "tiny", "--steps", "7"])
    assert common.preset_settings(args, DEFAULTS, PRESETS) == {
        "encoder": "mit-nano",  # the preset's
        "steps": 7,  # the command line's
        "batch": 2,  # the default
    }
    assert common.preset_settings(_parser().parse_args([]), DEFAULTS, PRESETS) == DEFAULTS


def test_comma_lists_drop_blanks() -> None:
    assert common.comma_list(" fp32, bf16,, ") == ["fp32", "bf16"]
    with pytest.raises(argparse.ArgumentTypeError, match="expected a comma list of one or more"):
        common.comma_list(" , ")


def test_params_mean_what_kedro_run_makes_of_them() -> None:
    """``--params`` is read by kedro run's own option: dotted keys nest, values are typed."""
    assert common.kedro_params_arg(
        "ingestion.embedded.sizes.source_train=6,runtime.device=cpu,a=0.5"
    ) == {
        "ingestion": {"embedded": {"sizes": {"source_train": 6}}},
        "runtime": {"device": "cpu"},
        "a": 0.5,
    }
    with pytest.raises(argparse.ArgumentTypeError, match="Item `warmup` must contain a key"):
        common.kedro_params_arg("warmup")


def test_the_catalog_is_read_with_the_runs_params(project_copy: Path) -> None:
    """A project run with ``--params`` is read with them: its drawn benchmark's sizes."""
    params = common.kedro_params_arg("ingestion.embedded.sizes.source_train=6")
    with common.project_catalog(project_copy, None, params) as catalog:
        assert catalog.load("params:ingestion")["embedded"]["sizes"]["source_train"] == 6
    with common.project_catalog(project_copy, "cityscapes_camera", None) as catalog:
        assert catalog.load("params:ingestion")["embedded"]["focal"] == 1.1


def test_parse_args_serves_a_worker_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--worker", json.dumps({"x": 2})]
    with pytest.raises(SystemExit) as stop:
        common.parse_args(_parser(), argv, lambda cfg: {"doubled": 2 * cfg["x"]})
    assert stop.value.code == 0
    line = capsys.readouterr().out.strip()
    assert json.loads(line.removeprefix(common.RESULT_MARKER)) == {"doubled": 4}
    args = common.parse_args(_parser(), ["--steps", "3"], lambda cfg: {})
    assert args.steps == 3 and args.worker is None


def test_pooled_rounds_keep_the_first_error_and_pool_the_good_times() -> None:
    results = [
        {"cpu": "a", "peak_mb": 5.0, "times_s": [0.3, 0.1]},
        {"error": "worker exited with 1"},
        {"cpu": "b", "peak_mb": 7.0, "times_s": [0.2]},
        {"error": "timed out"},
    ]
    fields = common.pooled(results, copied=("cpu",), maxima=("peak_mb",))
    assert fields == {
        "error": "worker exited with 1",
        "cpu": "a",
        "peak_mb": 7.0,
        "median_s": 0.2,
        "min_s": 0.1,
        "times_s": "0.30000;0.10000;0.20000",
    }
    assert common.pooled([{"error": "x"}], ("cpu",), ("peak_mb",)) == {"error": "x"}
    assert common.exit_code([{"a": 1}, fields]) == 1 and common.exit_code([{"a": 1}]) == 0
    assert common.exit_code([]) == 1  # nothing measured is no success


class _ScriptedCudaMemory:
    """A CUDA allocator's peak as the steps leave it: the warmup's autotuning goes far above
    what a steady step needs."""

    cuda = True
    source = "cuda.max_memory_allocated"
    baseline_mb = 1_000.0

    def __init__(self) -> None:
        self.peak = self.baseline_mb

    def restart_peak(self) -> None:
        self.peak = self.baseline_mb

    def peak_mb(self) -> float:
        return self.peak


def test_a_cuda_steps_peak_leaves_out_the_warmups_autotuning(monkeypatch) -> None:
    memory = _ScriptedCudaMemory()
    monkeypatch.setattr(common, "DeviceMemory", lambda device: memory)
    monkeypatch.setattr(common, "synchronize", lambda device: None)
    calls = []

    def step() -> None:
        calls.append(len(calls))
        warmup = len(calls) <= 2
        memory.peak = max(memory.peak, 140_000.0 if warmup else 11_000.0)

    result = common.timed_with_memory(step, "cuda", warmup=2, repeats=3, extra="step_mem_mb")
    assert len(calls) == 5 and len(result["times_s"]) == 3
    assert result["peak_mb"] == 11_000.0
    assert result["step_mem_mb"] == 10_000.0
    assert result["warmup_peak_mb"] == 140_000.0


def test_a_cpu_steps_peak_spans_the_warmup(monkeypatch) -> None:
    """The resident-set high-water mark cannot be restarted: no warmup peak of its own."""
    torch = pytest.importorskip("torch")
    big = []

    def step() -> None:
        if not big:
            big.append(torch.ones(64 * 2**20, dtype=torch.uint8))  # the warmup's 64 MiB
            big[0].fill_(1)

    result = common.timed_with_memory(step, "cpu", warmup=1, repeats=2)
    assert result["extra_mb"] >= 60
    assert result["warmup_peak_mb"] != result["warmup_peak_mb"]  # NaN: not measured


def test_rounds_run_only_the_kept_points_interleaved(monkeypatch) -> None:
    """``keep`` drops grid points (the teacher thread only concerns the self-training rows)
    and every round still runs the kept points in grid order."""
    started: list[tuple[str, str]] = []

    def worker(script, config, timeout):
        started.append((config["variant"], config["mode"]))
        return {"times_s": [1.0]}

    monkeypatch.setattr(common, "run_worker", worker)
    grid = {"variant": ["hrda", "uda_hrda"], "mode": ["on", "off"]}
    runs, _ = common.run_rounds(
        Path("x.py"), {}, grid, rounds=2, timeout=1,
        keep=lambda p: p["variant"].startswith("uda_") or p["mode"] == "on",
    )  # fmt: skip
    kept = [("hrda", "on"), ("uda_hrda", "on"), ("uda_hrda", "off")]
    assert list(runs) == kept
    assert started == kept * 2


BENCHMARKS = Path(common.__file__).parent


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("train_step.py", ["--threads", "-1"], "argument --threads: expected an integer >= 0"),
        ("train_step.py", ["--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
        ("inference.py", ["--chunks", "1,0"], "argument --chunks: expected integers > 0 or 'all'"),
        ("inference.py", ["--precision", "fp8"], "argument --precision: expected fp32 | bf16"),
        ("inference.py", ["--device", "tpu"], "argument --device: expected cpu | cuda | cuda:N"),
        ("large_image.py", ["--image", "10xfoo"], "argument --image: expected a size like 512"),
        ("seams.py", ["--project", "nowhere"], "argument --project: nowhere: not a Kedro project"),
        ("small_classes.py", ["--project", "nowhere"], "argument --project: nowhere: not a"),
        ("small_classes.py", ["--env", "nonexistent"], "argument --env: no environment named "
         "'nonexistent' (no folder {root}/conf/nonexistent); the environments are: "
         "cityscapes_camera, "),
        ("shift_components.py", ["--env", "nonexistent"], "argument --env: no environment "
         "named 'nonexistent'"),
        ("small_classes.py", ["--params", "warmup"], "argument --params: Invalid format of "
         "`params` option: Item `warmup` must contain a key and a value separated by `=`."),
        # Lists of names: every item is checked before any work, naming the ones refused.
        ("shift_components.py", ["--shifts", "none,weather"], "argument --shifts: expected a "
         "comma list of none | +palette"),
        ("small_classes.py", ["--splits", "target_val,test"], "argument --splits: expected a "
         "comma list of source_train | source_val | target_val | target_fresh, got 'test'"),
        ("train_step.py", ["--variants", "hrda,hrda2"], "argument --variants: expected a comma "
         "list of lr_only | "),
        ("train_step.py", ["--precision", "fp16"], "argument --precision: expected a comma list "
         "of fp32 | bf16, got 'fp16'"),
        ("busy_cpu.py", ["--phases", "train,trian"], "argument --phases: expected a comma list "
         "of "),
        ("busy_cpu.py", ["--wait-policy", "spinny"], "argument --wait-policy: expected a comma "
         "list of brief | passive | spin<N> | default, got 'spinny'"),
        ("busy_cpu.py", ["--predict-streams", "auto,0"], "argument --predict-streams: expected "
         "a comma list of auto | integers >= 1, got '0'"),
        ("busy_cpu.py", ["--teacher-thread", "yes"], "argument --teacher-thread: expected a "
         "comma list of on | off, got 'yes'"),
    ],
)  # fmt: skip
def test_bad_options_are_one_argparse_line_before_any_work(
    script: str, args: list[str], message: str
) -> None:
    """No worker starts, no traceback, no CSV: argparse's usage line and one error line."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    message = message.format(root=BENCHMARKS.parent)
    assert result.stderr.strip().splitlines()[-1].startswith(f"{script}: error: {message}")


@pytest.mark.parametrize(
    ("script", "option"),
    [
        ("small_classes.py", "--models"),
        ("shift_components.py", "--shifts"),
        ("busy_cpu.py", "--threads"),
        ("train_step.py", "--teacher-thread"),
        ("loop_efficiency.py", "--data"),
    ],
)
def test_an_empty_list_is_refused_before_any_work(tmp_path: Path, script: str, option: str) -> None:
    """An empty comma list would measure nothing (after minutes of set-up) and save a table
    without rows: argparse's one line naming the option, and no CSV."""
    out = tmp_path / "result.csv"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), option, " ,", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"{script}: error: argument {option}: expected a comma list of one or more, got ' ,'"
    )
    assert not out.exists()


def test_a_missing_checkpoint_is_one_error_line_naming_the_option(tmp_path: Path) -> None:
    """seams.py loads the checkpoint --checkpoint names before any work: a wrong path ends
    it as a bad option does, and the message names the option, not predict's parameter."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "seams.py"), "--project", str(BENCHMARKS.parent),
         "--checkpoint", str(tmp_path / "nothere.pt")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "predict.checkpoint" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("seams.py: error: ParameterError: argument --checkpoint: ")
    assert "nothere.pt: checkpoint not found" in last


def test_seams_in_a_project_without_ingestion_names_the_missing_manifest(tmp_path: Path) -> None:
    """A trained checkpoint but no target-val manifest: one line naming the file, exit 2."""
    from hrda_kedro.hrda.checkpoint import save_checkpoint
    from hrda_kedro.hrda.model_config import ModelConfig
    from hrda_kedro.hrda.training.trainer import StageResult
    from hrda_kedro.params import parse
    from hrda_kedro.runtime.models import build_model
    from hrda_kedro.stages import checkpoint_payload

    (tmp_path / "pyproject.toml").write_text("")
    params = parse(ModelConfig, {"network": {"encoder": "mit-nano"}}, "model")
    payload = checkpoint_payload(
        StageResult(model=build_model(params).state_dict(), teacher=None), params, "w"
    )
    save_checkpoint(tmp_path / "model.pt", payload)
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "seams.py"), "--project", str(tmp_path),
         "--checkpoint", "model.pt"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    manifest = tmp_path / "data/05_model_input/target_val_manifest.csv"
    assert result.stderr.strip().splitlines()[-1] == (
        f"seams.py: error: MissingInputError: target_val_manifest: {manifest} not found; "
        "made by kedro run --pipeline=ingestion"
    )


@pytest.mark.parametrize(
    ("script", "missing"),
    [
        ("small_classes.py", "source_train_manifest: {root}/data/05_model_input/source_train_"
         "manifest.csv not found; made by kedro run --pipeline=ingestion (4 more inputs not made "
         "yet)"),
        ("shift_components.py", "source_only_model: {root}/data/06_models/source_only/model.pt: no "
         "checkpoint saved here yet (expected {root}/data/06_models/source_only/model.pt/"
         "<timestamp>/model.pt); made by kedro run --pipeline=warmup"),
    ],
)  # fmt: skip
def test_scripts_reading_the_catalog_name_an_input_never_made_and_its_pipeline(
    project_copy: Path, script: str, missing: str
) -> None:
    """The check ``kedro run`` makes at its start: in a project that never ran, one line
    naming the first missing dataset in the order the project makes them (the manifests
    before the models) and the pipeline that makes it, before any work."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--project", str(project_copy), "--images", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    expected = f"{script}: error: MissingInputError: {missing.format(root=project_copy)}"
    assert result.stderr.strip().splitlines()[-1] == expected


def test_user_errors_end_the_script_with_the_error_under_kedros_wrapper(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model the options named that the catalog cannot load (our error under Kedro's
    DatasetError) is one line with the dataset's name; any other error keeps its traceback."""
    from kedro.io.core import DatasetError

    from hrda_kedro.data import MissingInputError

    parser = common.argument_parser("test")
    parser.prog = "script.py"
    with pytest.raises(SystemExit) as stopped, common.user_errors(parser):
        try:
            raise MissingInputError("round_7/model.pt: no checkpoint saved here yet")
        except MissingInputError as cause:
            raise DatasetError(
                "round_7.model: Failed while loading data from dataset CheckpointDataset(...)."
            ) from cause
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "script.py: error: MissingInputError: round_7.model: "
        "round_7/model.pt: no checkpoint saved here yet\n"
    )
    with pytest.raises(RuntimeError, match="a bug"), common.user_errors(parser):
        raise RuntimeError("a bug")
    # A script's own check of options against the project ends the same way.
    with pytest.raises(SystemExit) as stopped, common.user_errors(parser):
        raise common.UsageError("--splits target_fresh: fresh images exist for ...")
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "script.py: error: --splits target_fresh: fresh images exist for ...\n"
    )


def test_a_table_whose_every_row_failed_does_not_replace_a_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = tmp_path / "result.csv"
    recorded.write_text("a\n1\n")
    failed = [{"a": None, "error": "ValueError: box too large"}]
    common.emit("title", failed, ["a"], ["a", "error"], recorded)
    assert recorded.read_text() == "a\n1\n"
    assert "not saved: every row failed" in capsys.readouterr().out
    common.emit("title", [{"a": 2}, *failed], ["a"], ["a", "error"], recorded)
    assert recorded.read_text().splitlines()[1] == "2,"  # one row good: the table is saved


def test_a_table_without_rows_does_not_replace_a_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = tmp_path / "result.csv"
    recorded.write_text("a\n1\n")
    common.emit("title", [], ["a"], ["a"], recorded)
    assert recorded.read_text() == "a\n1\n"
    assert f"not saved: no rows ({recorded})" in capsys.readouterr().out


def test_a_peak_is_measured_at_the_first_size_whose_call_takes_long_enough(monkeypatch) -> None:
    """bf16 on a CPU without bf16 instructions: 0.3 GFLOP/s, 9 minutes a worker at the full
    sizes. A call that already takes PEAK_CALL_S at a smaller size is timed there; a fast
    one (fp32, a GPU) grows to the full size, as before."""
    clock = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(common, "synchronize", lambda device: None)
    made = []

    def make(seconds_per_size):
        def size_call(size):
            made.append(size)
            return (lambda: clock.__setitem__(0, clock[0] + size * seconds_per_size)), size

        return size_call

    slow = make(common.PEAK_CALL_S / 2)
    assert common.sized_call(slow, (1, 2, 4, 8), "cpu")[1] == 2
    assert made == [1, 2]
    made.clear()
    fast = make(common.PEAK_CALL_S / 100)
    assert common.sized_call(fast, (1, 2, 4, 8), "cpu")[1] == 8
    assert made == [1, 2, 4, 8]


def test_a_slow_first_call_does_not_stop_the_growth(monkeypatch) -> None:
    """A GPU's first call of a shape pays cuBLAS set-up or cuDNN autotuning: untimed."""
    clock = [0.0]
    monkeypatch.setattr(common.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(common, "synchronize", lambda device: None)

    def make(size):
        calls = [0]

        def call():
            calls[0] += 1
            clock[0] += 10 * common.PEAK_CALL_S if calls[0] == 1 else common.PEAK_CALL_S / 100

        return call, size

    assert common.sized_call(make, (1, 2, 4, 8), "cuda")[1] == 8
