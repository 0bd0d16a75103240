"""``kedro viz run`` serves the project's pipeline graph offline."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

STARTUP_TIMEOUT_S = 120


def _free_port() -> int:
    """A free local port below 49152 (kedro viz refuses the ephemeral range)."""
    for port in random.sample(range(20000, 49000), 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def _wait_for_graph(url: str, server: subprocess.Popen, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"kedro viz exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(
        f"kedro viz did not answer {url} in {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


def _stop(server: subprocess.Popen) -> None:
    """End the server's whole process group: it serves from a spawned child process."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.slow
def _save_reports(project: Path) -> None:
    """A table, a JSON report and a figure saved through the catalog, for the previews."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        catalog = session.load_context().catalog
        catalog.save("miou_table", pd.DataFrame({"model": ["round_2"], "fused": [0.5]}))
        catalog.save("evaluation_summary", {"round_2": {"miou": 0.5}})
        figure, axes = plt.subplots()
        axes.plot([0, 1], [0, 1])
        catalog.save("qualitative_figure", figure)
        plt.close(figure)


def _previews(base: str, graph: dict[str, Any], names: set[str]) -> dict[str, str | None]:
    """The preview type kedro viz serves for each named dataset (None: no preview)."""
    found = {}
    for node in graph["nodes"]:
        if node["type"] == "data" and node["name"] in names:
            with urllib.request.urlopen(f"{base}/nodes/{node['id']}", timeout=30) as response:
                details = json.load(response)
            found[node["name"]] = details.get("preview_type") if details.get("preview") else None
    return found


def test_kedro_viz_lists_our_pipelines_nodes_and_rounds(project_copy: Path) -> None:
    _save_reports(project_copy)
    port = _free_port()
    log = project_copy / "viz.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "kedro", "viz", "run", "--host", "127.0.0.1",
             "--port", str(port), "--no-browser"],
            cwd=project_copy,
            env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        graph = _wait_for_graph(f"http://127.0.0.1:{port}/api/main", server, log)
        predict = _wait_for_graph(f"http://127.0.0.1:{port}/api/pipelines/predict", server, log)
        previews = _previews(
            f"http://127.0.0.1:{port}/api",
            graph,
            {"miou_table", "evaluation_summary", "qualitative_figure"},
        )
    finally:
        _stop(server)

    tasks = {
        (node["name"], tuple(node["modular_pipelines"] or ()))
        for node in graph["nodes"]
        if node["type"] == "task"
    }
    expected = {
        ("ingest_datasets", ()),
        ("train_source_only", ()),
        ("evaluate_source_only", ()),
        ("build_miou_report", ()),
        ("plot_per_class_iou", ()),
        ("plot_qualitative_grid", ()),
        *(
            (name, (r,))
            for r in ("round_1", "round_2")
            for name in ("materialize_pseudo_labels", "train")
        ),
    }
    assert expected <= tasks
    full_names = {node.get("full_name") for node in graph["nodes"] if node["type"] == "task"}
    assert {"round_1.train", "round_2.train"} <= full_names
    assert {"round_1", "round_2"} <= set(graph["modular_pipelines"])
    datasets = {node["name"] for node in graph["nodes"] if node["type"] == "data"}
    assert {"miou_table", "qualitative_figure", "source_only_model"} <= datasets
    parameters = {node["name"] for node in graph["nodes"] if node["type"] == "parameters"}
    assert {"params:model", "params:evaluation"} <= parameters
    # Layers are shown (kedro viz drops them all when they form a cycle), in data-flow order.
    layers = graph["layers"]
    assert {"model_input", "models", "model_output", "reporting"} <= set(layers)
    assert layers.index("model_input") < layers.index("models") < layers.index("reporting")
    assert {"export", "export_onnx"} <= {p["id"] for p in graph["pipelines"]}
    # predict's inputs are catalog datasets: the folder of images and the last round's model
    predict_data = {
        node.get("full_name") or node["name"]: node
        for node in predict["nodes"]
        if node["type"] == "data"
    }
    assert {"predict_images", "round_2.model"} <= set(predict_data), sorted(predict_data)
    assert predict_data["predict_images"]["layer"] == "raw"
    pipelines = {p["id"] for p in graph["pipelines"]}
    assert {"ingestion", "warmup", "self_training", "evaluation", "uda"} <= pipelines
    # Tables, reports and figures saved by a run are previewed (a figure as an image).
    assert previews == {
        "miou_table": "TablePreview",
        "evaluation_summary": "JSONPreview",
        "qualitative_figure": "ImagePreview",
    }
