"""Launchers: torchrun stops with a message, SLURM maps, two localhost "nodes" train as one."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from hrda_kedro import launch
from hrda_kedro.hrda.checkpoint import load_checkpoint
from hrda_kedro.launch import Cluster, LauncherError, StageChannel, detect_cluster
from tests.conftest import TINY_PARAMS

PLAIN_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {"kedro": {"level": "INFO"}, "hrda_kedro": {"level": "INFO"}},
    "root": {"handlers": ["console"]},
}
SRUN = {"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_STEP_NUM_NODES": "2"}


def test_a_plain_run_is_one_machine() -> None:
    assert detect_cluster({}) == Cluster()
    assert detect_cluster({"SLURM_JOB_ID": "7", "SLURM_NNODES": "1"}) == Cluster()


@pytest.mark.parametrize(
    "env",
    [
        {"TORCHELASTIC_RUN_ID": "x", "LOCAL_RANK": "0", "WORLD_SIZE": "2"},
        {"WORLD_SIZE": "4"},
        {"LOCAL_RANK": "1"},
    ],
)
def test_torchrun_stops_and_says_how_to_launch(env: dict[str, str]) -> None:
    with pytest.raises(LauncherError, match=r"torchrun .*runtime\.devices=N.*NNODES"):
        detect_cluster(env)


def test_srun_one_task_per_node_maps_to_nodes() -> None:
    env = {**SRUN, "SLURM_STEP_NUM_TASKS": "2", "SLURM_NODEID": "1"}
    env |= {"MASTER_ADDR": "node01", "MASTER_PORT": "29500"}
    assert detect_cluster(env) == Cluster(2, 1, "node01", 29500, "SLURM")


def test_srun_without_master_address_says_how_to_set_it() -> None:
    env = {**SRUN, "SLURM_STEP_NUM_TASKS": "2", "SLURM_NODEID": "0"}
    with pytest.raises(LauncherError, match=r"set MASTER_ADDR and MASTER_PORT.*scontrol"):
        detect_cluster(env)


def test_srun_with_a_task_per_gpu_stops() -> None:
    env = {**SRUN, "SLURM_STEP_NUM_TASKS": "8", "SLURM_NODEID": "0"}
    with pytest.raises(LauncherError, match=r"8 tasks on 2 node\(s\).*--ntasks-per-node=1"):
        detect_cluster(env)


def test_a_multi_node_allocation_without_srun_stops() -> None:
    with pytest.raises(LauncherError, match=r"2 nodes runs `kedro run` on one of them only"):
        detect_cluster({"SLURM_JOB_ID": "7", "SLURM_NNODES": "2"})


def test_explicit_nodes_win_and_are_checked() -> None:
    env = {**SRUN, "SLURM_STEP_NUM_TASKS": "8", "NNODES": "2", "NODE_RANK": "1"}
    env |= {"MASTER_ADDR": "a", "MASTER_PORT": "1"}
    assert detect_cluster(env) == Cluster(2, 1, "a", 1, "NNODES/NODE_RANK")
    with pytest.raises(LauncherError, match=r"node rank 2 of 2"):
        detect_cluster({"NNODES": "2", "NODE_RANK": "2"})


def test_stages_reach_the_other_node_and_the_end_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-over protocol alone: node 0 sends two stages and the end, node 1 receives."""
    monkeypatch.chdir(tmp_path)  # the signing key file lands here
    port = _free_port_pair()
    node0 = StageChannel(Cluster(2, 0, "127.0.0.1", port, "test"))
    node1 = StageChannel(Cluster(2, 1, "127.0.0.1", port, "test"))
    received: list[object] = []

    def serve() -> None:
        while (job := node1.receive()) is not None:
            received.append(job)

    worker = threading.Thread(target=serve)
    worker.start()
    node0.send({"stage": "warmup"})
    node0.send({"stage": "round_1"})
    node0.finish()  # returns once node 1 confirmed
    assert (tmp_path / ".stage_channel_key").stat().st_mode & 0o777 == 0o600
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert received == [{"stage": "warmup"}, {"stage": "round_1"}]


def test_a_message_not_signed_by_node_0_is_refused_before_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    port = _free_port_pair()
    node0 = StageChannel(Cluster(2, 0, "127.0.0.1", port, "test"))
    node1 = StageChannel(Cluster(2, 1, "127.0.0.1", port, "test"))
    node0.store.set("stage/0", b"x" * 32 + b"cos\nsystem\n(S'touch pwned'\ntR.")  # a forged pickle
    with pytest.raises(LauncherError, match="not signed by node 0 of this run"):
        node1.receive()
    assert not Path("pwned").exists()


def test_a_node_whose_node_0_never_opens_the_hand_over_stops_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node 0 failed before its first pipeline node: node 1 must not wait for 48 hours."""
    monkeypatch.setattr(launch, "CONNECT_WAIT", timedelta(seconds=1))
    with pytest.raises(LauncherError, match=r"node 1: node 0 did not open the stage hand-over"):
        StageChannel(Cluster(2, 1, "127.0.0.1", _free_port_pair(), "test"))


def test_node_0_failing_stops_the_other_node_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error on node 0 (``on_pipeline_error``) is an error on node 1, not a clean end."""
    monkeypatch.chdir(tmp_path)
    port = _free_port_pair()
    node0 = StageChannel(Cluster(2, 0, "127.0.0.1", port, "test"))
    node1 = StageChannel(Cluster(2, 1, "127.0.0.1", port, "test"))
    node0.send({"stage": "warmup"})
    assert node1.receive() == {"stage": "warmup"}
    errors: list[Exception] = []

    def serve() -> None:
        try:
            node1.receive()
        except LauncherError as error:
            errors.append(error)

    worker = threading.Thread(target=serve)
    worker.start()
    node0.finish(failed=True)  # returns once node 1 heard it
    worker.join(timeout=60)
    assert [str(e) for e in errors] == [
        "node 1: node 0 stopped the run with an error (its log says which); a re-run of every "
        "node resumes from the last checkpoint"
    ]


def test_node_0_vanishing_mid_run_stops_the_other_node_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node 0 killed (no chance to say so): node 1's wait ends when the connection drops."""
    monkeypatch.chdir(tmp_path)
    port = _free_port_pair()
    node0 = StageChannel(Cluster(2, 0, "127.0.0.1", port, "test"))
    node1 = StageChannel(Cluster(2, 1, "127.0.0.1", port, "test"))
    del node0  # the store's server lives in node 0's channel
    gc.collect()
    with pytest.raises(LauncherError, match=r"node 1: node 0 closed the stage hand-over"):
        node1.receive()


def _free_port_pair() -> int:
    """A port P with P + 1 free too (process groups on P, the stage hand-over on P + 1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port pair")


@pytest.mark.slow
def test_two_localhost_nodes_train_identical_teachers_with_one_writer(
    project_copy: Path,
) -> None:
    """Node 0 runs the pipeline; node 1 only trains its rank (gloo) and writes nothing."""
    params = {**TINY_PARAMS, "self_training": {**TINY_PARAMS["self_training"], "rounds": 1}}
    # Node 0 evaluates alone while node 1 waits: one image, one prediction is enough.
    evaluation = {"predictions": ["fused"], "max_images": 1, "qualitative_images": 1}
    params["evaluation"] = {**params["evaluation"], **evaluation}
    params["runtime"] = {**params["runtime"], "devices": 1, "device": "cpu"}
    (project_copy / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(params))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "NNODES": "2", "MASTER_ADDR": "127.0.0.1"}
    env |= {"MASTER_PORT": str(_free_port_pair()), "KEDRO_DISABLE_TELEMETRY": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    plain = project_copy / "plain_logging.yml"  # one line per record: Rich wraps and pads
    plain.write_text(yaml.safe_dump(PLAIN_LOGGING))
    env["KEDRO_LOGGING_CONFIG"] = str(plain)
    command = [sys.executable, "-m", "kedro", "run", "--pipeline=uda"]
    nodes = [
        subprocess.Popen(
            command,
            cwd=project_copy,
            env={**env, "NODE_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=1800)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "node 1 of 2 (NNODES/NODE_RANK): trains the stages" in logs[1]
    assert "node 1: node 0 is done after 2 training stages" in logs[1]
    assert "Running node" not in logs[1] and "Saving data" not in logs[1]
    assert "Running node: train_source_only" in logs[0]

    data = project_copy / "data"
    # One writer: each versioned output holds exactly one version, not one per node.
    for model in ("source_only", "round_1"):
        assert len(list((data / "06_models" / model / "model.pt").iterdir())) == 1
    state = load_checkpoint(next(project_copy.glob("data/**/round_1/state.pt")))
    digests = {rank["teacher_digest"] for rank in state["ranks"]}
    assert len(state["ranks"]) == 2 and len(digests) == 1
