"""Which MLflow run a node logs into, also from worker processes: a real local store."""

from __future__ import annotations

import json
import multiprocessing
import os

import pandas as pd
import pytest

from hrda_kedro import tracking, tracking_runs

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("kedro_mlflow")


def test_ablation_runs_nest_under_the_study(store) -> None:
    namespaces = [None, "ablations.hrda.seed_1.round_1", "ablations.daformer.seed_1"]
    with mlflow.start_run() as study:
        tracking_runs.start_pipeline(namespaces)
        for variant, miou in (("hrda", 0.3), ("daformer", 0.2)):
            tracking_runs.enter_node(f"ablations.{variant}.seed_1.round_1")
            tracking.log_saved(f"ablations.{variant}.seed_1.metrics", {"miou": miou}, None)
        tracking_runs.enter_node(None)
        table = [{"model": "round_1", "prediction": "fused", "classes": "all", "miou": 0.4}]
        tracking.log_saved("miou_table", pd.DataFrame(table), None)
        tracking_runs.end_pipeline()
    children = store.search_runs(
        [study.info.experiment_id], f"tags.mlflow.parentRunId = '{study.info.run_id}'"
    )
    found = {
        (r.data.params["variant"], r.data.params["seed"], r.data.metrics["miou"], r.info.status)
        for r in children
    }
    assert found == {("hrda", "1", 0.3, "FINISHED"), ("daformer", "1", 0.2, "FINISHED")}
    assert store.get_run(study.info.run_id).data.metrics == {"miou/round_1/fused": 0.4}
    assert tracking_runs._SHARED not in os.environ  # the workers' variable goes with the run


def _worker_node(namespace: str, miou: float) -> None:
    """A ParallelRunner worker's node hooks, in a spawned process (no run active there)."""
    from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook

    tracking_runs.join_in_worker()
    tracking_runs.enter_node(namespace)
    params = {"params:model": {"hrda": {"scale": 2}}}
    mlflow_hook.before_node_run(node=None, catalog=None, inputs=params, is_async=False)
    tracking.log_saved(f"{namespace}.metrics", {"miou": miou}, None)


def test_spawned_workers_log_into_the_main_process_runs(store, monkeypatch) -> None:
    """One run per variant and seed however many processes log into it, kedro-mlflow's
    parameters flattened into the study's run as in the main process; no stray run."""
    from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook

    monkeypatch.setattr(mlflow_hook, "flatten", True)  # as mlflow.yml set it at run start
    monkeypatch.setattr(mlflow_hook, "long_params_strategy", "truncate", raising=False)
    spawn = multiprocessing.get_context("spawn")
    with mlflow.start_run() as study:
        tracking_runs.start_pipeline(["ablations.hrda.seed_1", "ablations.hrda.seed_2"])
        assert json.loads(os.environ[tracking_runs._SHARED])["pid"] == os.getpid()
        for namespace, miou in (("ablations.hrda.seed_1", 0.3), ("ablations.hrda.seed_2", 0.1)):
            worker = spawn.Process(target=_worker_node, args=(namespace, miou))
            worker.start()
            worker.join()
            assert worker.exitcode == 0
        tracking_runs.end_pipeline()
    runs = store.search_runs([e.experiment_id for e in store.search_experiments()])
    metrics = {r.info.run_name: r.data.metrics for r in runs if r.info.run_id != study.info.run_id}
    assert metrics == {"hrda/seed_1": {"miou": 0.3}, "hrda/seed_2": {"miou": 0.1}}
    assert store.get_run(study.info.run_id).data.params == {"model.hrda.scale": "2"}


def test_other_nodes_discard_their_own_run(store) -> None:
    """On nodes > 0 of a multi-machine run, node 0's run is the record; theirs goes."""
    run = mlflow.start_run()
    tracking_runs.discard_active_run()
    assert mlflow.active_run() is None
    assert store.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
