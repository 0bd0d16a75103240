"""MLflow tracking (optional extra), against a real local MLflow store: metrics read back."""

from __future__ import annotations

import json
import pickle
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from hrda_kedro import tracking
from hrda_kedro.hrda.training.trainer import Trainer
from hrda_kedro.pipelines.ablations.nodes import deep_merge
from tests.conftest import TINY_PARAMS
from tests.pipelines.ablations.test_pipeline import TINY, shipped_parameters
from tests.reliability.helpers import copy_project, make_project, run_in_process
from tests.reliability.test_second_round_faults import start_and_stop
from tests.test_interrupted_runs import interrupt, notebook_cell

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("kedro_mlflow")


def test_without_an_active_run_nothing_is_logged(store) -> None:
    assert tracking.stage_logger() is None
    tracking.log_saved("miou_table", pd.DataFrame(), catalog=None)  # no error, no run


def test_training_rows_survive_pickling_into_a_worker(store) -> None:
    with mlflow.start_run() as run:
        logger = pickle.loads(pickle.dumps(tracking.stage_logger()))  # as mp.spawn does
        rows = [
            {"iteration": float(i), "loss": 2.0 - i / 10, "lr": 1e-3, "seconds": 0.5}
            for i in (1, 2, 3)
        ]
        logger("round_1", rows)
    history = store.get_metric_history(run.info.run_id, "round_1/loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.9), (2, 1.8), (3, 1.7)]
    speed = store.get_metric_history(run.info.run_id, "round_1/it_per_s")
    assert [m.value for m in speed] == [2.0, 2.0, 2.0]


@pytest.mark.slow
def test_a_tracked_uda_run_reads_back(project_copy: Path) -> None:
    """kedro-mlflow's own hook opens the run; the project's hooks and trainer fill it."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    params = {**TINY_PARAMS, "self_training": {**TINY_PARAMS["self_training"], "rounds": 1}}
    bootstrap_project(project_copy)
    with KedroSession.create(project_path=project_copy, runtime_params=params) as session:
        session.run(pipeline_names=["uda"])
    assert mlflow.active_run() is None  # a notebook's next session opens a run of its own

    client = mlflow.MlflowClient(f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hrda_kedro")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["warmup.iterations"] == "3"  # flattened parameters
    assert run.data.params["model.hrda.detail_crop"] == "[32, 32]"
    loss = client.get_metric_history(run.info.run_id, "warmup/loss")
    assert [m.step for m in loss] == [1, 2, 3]
    for name in ("round_1/mix_fused", "round_1/pseudo_weight", "round_1/it_per_s", "round_1/lr"):
        assert len(client.get_metric_history(run.info.run_id, name)) == 2, name
    for model in ("source_only", "round_1"):
        for prediction in ("fused", "context", "detail"):
            assert 0 <= run.data.metrics[f"miou/{model}/{prediction}"] <= 1
    reports = _artifacts(client, run.info.run_id)
    tables = ("miou_table.csv", "per_class_iou.png", "qualitative.png")
    assert {f"reports/{file}" for file in tables} <= reports
    # every stage's history and pseudo-label quality, none replacing another's
    histories = {f"reports/{stage}/training_history.csv" for stage in ("source_only", "round_1")}
    assert histories | {"reports/round_1/pseudo_label_quality.json"} <= reports
    models = [Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")]
    assert models == ["model.pt"]


@pytest.mark.slow
def test_an_interrupted_notebook_run_is_recorded_as_failed(
    project_copy: Path, notebook_shell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted in a notebook, the run stayed RUNNING and active in the kernel: the next
    run there nested into it."""
    monkeypatch.setattr(Trainer, "run", interrupt)
    notebook_shell.user_ns.update(PROJECT=project_copy, PARAMS=TINY_PARAMS)
    result = notebook_shell.run_cell(notebook_cell("uda"))
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert mlflow.active_run() is None
    client = mlflow.MlflowClient(f"sqlite:///{project_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hrda_kedro")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_kedro_run_stopped_by_a_signal_is_recorded_as_killed(
    reference: Path, tmp_path: Path, sig: int
) -> None:
    """MLflow's exit handler ended the stopped run FINISHED, like a run that completed."""
    project = copy_project(reference, tmp_path / "project")
    status = start_and_stop(project, "stop-in-step:4", ("--pipeline", "warmup"), sig)
    assert status == 128 + sig
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hrda_kedro")
    (last, *_) = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
    assert last.data.params["warmup.iterations"] == "6"  # this run, not the reference's
    assert last.info.status == "KILLED"


@pytest.mark.slow
def test_sessions_in_one_process_track_into_their_own_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook runs one session after another in one process: each logs into its own
    project's store (MLflow keeps one store per URI for the process: with the relative URI of
    mlflow.yml, the second would log into the first's), and leaves no run active (the next
    session's kedro-mlflow would log into that one)."""
    projects = [make_project(tmp_path / name) for name in ("first", "second")]
    for project in projects:
        monkeypatch.chdir(project)
        run_in_process(project, "ingestion")
        assert mlflow.active_run() is None
    for project in projects:
        client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert (run.info.run_name, run.info.status) == ("ingestion", "FINISHED")
        assert run.info.artifact_uri.startswith((project / "mlruns").as_uri())
        reports = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "reports")}
        assert reports == {"ingestion_report.json", "ingestion_samples.png"}


def _two_variant_study(project: Path) -> dict:
    """The tiny study, cut to 2 variants x 1 seed (the copy's conf/base: variants merge,
    so no other environment can drop one); returns the other tiny runtime parameters."""
    shipped = shipped_parameters()["ablations"]
    ablations = deep_merge(shipped, {**TINY["ablations"], "seeds": [1]})
    ablations["variants"] = {name: shipped["variants"][name] for name in ("daformer", "hrda")}
    path = project / "conf" / "base" / "parameters_ablations.yml"
    path.write_text(yaml.safe_dump({"ablations": ablations}))
    return {group: value for group, value in TINY.items() if group != "ablations"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("runner", "start_method"),
    [
        ("kedro.runner.SequentialRunner", None),
        ("kedro.runner.ParallelRunner", "fork"),  # Linux's default up to Python 3.13
        ("hrda_kedro.runner.ParallelRunner", "spawn"),  # Kedro's runs no project hook there
    ],
)
def test_a_tracked_ablation_study_reads_back(
    project_copy: Path, monkeypatch: pytest.MonkeyPatch, runner: str, start_method: str | None
) -> None:
    """One nested run per variant and seed under the study's run, with its history, metrics
    and reports, logged from whichever process ran the node; no other run anywhere."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.utils import load_obj

    if start_method is not None:
        monkeypatch.setenv("KEDRO_MP_CONTEXT", start_method)
    params = _two_variant_study(project_copy)
    bootstrap_project(project_copy)
    runner_class = load_obj(runner)
    run_with = runner_class() if start_method is None else runner_class(max_workers=2)
    with KedroSession.create(project_path=project_copy, runtime_params=params) as session:
        session.run(pipeline_names=["ablations"], runner=run_with)

    client = mlflow.MlflowClient(f"sqlite:///{project_copy / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (study,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert study.data.params["ablations.seeds"] == "[1]"  # kedro-mlflow's, flattened
    reports = _artifacts(client, study.info.run_id)
    assert "reports/ablations/ablation_table.csv" in reports
    nested = {r.info.run_name: r for r in runs if r is not study}
    assert sorted(nested) == ["daformer/seed_1", "hrda/seed_1"]
    for name, run in nested.items():
        variant = name.split("/")[0]
        assert run.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert run.data.params == {"variant": variant, "seed": "1"}
        saved = project_copy / f"data/08_reporting/ablations/{variant}/seed_1/metrics.json"
        assert run.data.metrics["miou"] == json.loads(saved.read_text())["miou"]
        for stage in ("warmup", "round_1"):
            history = client.get_metric_history(run.info.run_id, f"{stage}/loss")
            assert [m.step for m in history] == [1, 2], (name, stage)
        artifacts = _artifacts(client, run.info.run_id)
        expected = ("metrics.json", "source_only/training_history.csv")
        assert {f"reports/{file}" for file in expected} <= artifacts, name
        assert "reports/round_1/training_history.csv" in artifacts, name
    assert {r.info.status for r in runs} == {"FINISHED"}


def _artifacts(client: Any, run_id: str, folder: str = "reports") -> set[str]:
    """Every artifact file under ``folder`` of the run, by its path."""
    found: set[str] = set()
    for entry in client.list_artifacts(run_id, folder):
        found |= _artifacts(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found
