"""Which machine runs what: launcher detection and the hand-over of training stages.

``kedro run`` is the entry point on every machine; the training node starts one worker per
device itself (:mod:`hrda_kedro.stages`). On several machines, node 0 runs the whole
pipeline and is the only one that writes catalog outputs; every other node only trains:
node 0 hands it each training stage through a TCP store at ``MASTER_PORT + 1`` and it
starts its local ranks for it, until node 0 says the run is over.

Launchers that start ``kedro run`` several times themselves are recognised:

- ``torchrun`` (``WORLD_SIZE``, ``LOCAL_RANK``, ``TORCHELASTIC_RUN_ID``) would run the whole
  pipeline once per process, each writing the same outputs: the run stops with a message
  that says how to launch instead;
- SLURM job steps (``srun``) are mapped: ``SLURM_STEP_NUM_NODES`` -> ``NNODES``,
  ``SLURM_NODEID`` -> ``NODE_RANK``, one task per node; several tasks per node, or a
  multi-node allocation without ``srun``, stop with a message.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# How long a node waits for the next stage: node 0 evaluates and materializes
# pseudo-labels between stages (minutes to hours at Cityscapes scale).
STAGE_WAIT = timedelta(hours=48)
_DONE = b"done"
_FAILED = b"failed"  # node 0 stopped with an error: the other nodes stop with one too
_SIGNATURE = 32  # bytes of an HMAC-SHA256
# The run's signing key, in the project folder that every node shares (git-ignored).
KEY_FILE = Path(".stage_channel_key")
ACK_WAIT = timedelta(minutes=5)  # how long node 0 waits for the others to hear "done"
# How long nodes > 0 wait for node 0 to open the hand-over: it does so before its first
# pipeline node, seconds after it starts. Past it, node 0 stopped early (its log says why).
CONNECT_WAIT = timedelta(minutes=10)

TORCHRUN_VARIABLES = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "WORLD_SIZE")
HOW_TO_LAUNCH = (
    "start `kedro run` once per machine instead: the training node starts one worker per "
    "device itself (`--params runtime.devices=N`); on several machines set NNODES, "
    "NODE_RANK, MASTER_ADDR and MASTER_PORT (see the README, 'Several GPUs, several machines')"
)


class LauncherError(RuntimeError):
    """The run was started in a way that would duplicate work or outputs."""


@dataclass(frozen=True)
class Cluster:
    """The machines of a run: ``nnodes`` of them, this one is ``node_rank``."""

    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    source: str = "single machine"

    @property
    def control_port(self) -> int:
        """The stage hand-over store's port: next to the process groups' ``MASTER_PORT``."""
        assert self.master_port is not None
        return self.master_port + 1


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise LauncherError(f"{name}={env[name]!r}: expected an integer") from None


def detect_cluster(env: Mapping[str, str]) -> Cluster:
    """The run's machines from the environment; stops on a launcher that would duplicate it."""
    found = [name for name in TORCHRUN_VARIABLES if name in env]
    if found:
        values = ", ".join(f"{name}={env[name]}" for name in found)
        raise LauncherError(
            f"kedro run was started by torchrun or a similar launcher ({values}): each of "
            f"its processes would run the whole pipeline and write the same outputs; "
            + HOW_TO_LAUNCH
        )
    if "NNODES" in env:  # set by hand: it wins over a scheduler's variables
        nnodes, node_rank, source = (
            _int(env, "NNODES"),
            _int(env, "NODE_RANK") if "NODE_RANK" in env else 0,
            "NNODES/NODE_RANK",
        )
    elif "SLURM_STEP_NUM_TASKS" in env:  # inside `srun`
        tasks, nnodes = _int(env, "SLURM_STEP_NUM_TASKS"), _int(env, "SLURM_STEP_NUM_NODES")
        if tasks != nnodes:
            raise LauncherError(
                f"srun started {tasks} tasks on {nnodes} node(s) (SLURM_STEP_NUM_TASKS, "
                "SLURM_STEP_NUM_NODES): start one task per node (`srun --ntasks-per-node=1 "
                "kedro run ...`); the training node starts one worker per device itself "
                "(`--params runtime.devices=N`)"
            )
        node_rank, source = _int(env, "SLURM_NODEID"), "SLURM"
    elif "SLURM_JOB_ID" in env and int(env.get("SLURM_NNODES", "1")) > 1:
        raise LauncherError(
            f"a SLURM job of {env['SLURM_NNODES']} nodes runs `kedro run` on one of them "
            "only: start it on every node with `srun --ntasks-per-node=1 kedro run ...` "
            "(README: 'Several GPUs, several machines')"
        )
    else:
        return Cluster()
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise LauncherError(f"{source}: node rank {node_rank} of {nnodes} nodes is not valid")
    if nnodes == 1:
        return Cluster(source=source)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        hint = (
            ' (in an sbatch script: export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" '
            "| head -n 1) MASTER_PORT=29500)"
            if source == "SLURM"
            else ""
        )
        raise LauncherError(
            f"{nnodes} nodes ({source}): set {' and '.join(missing)} on every machine{hint}"
        )
    return Cluster(nnodes, node_rank, env["MASTER_ADDR"], _int(env, "MASTER_PORT"), source)


def cluster() -> Cluster:
    """:func:`detect_cluster` of this process's environment."""
    return detect_cluster(os.environ)


class StageChannel:
    """Node 0 hands each training stage (a pickled ``StageJob``) to the other nodes.

    A ``torch.distributed.TCPStore`` served by node 0: stage ``k`` is the key ``stage/k``;
    the value ``done`` ends the run. A job holds data sets and lazy file readers, which
    only pickle can carry; so that nothing else that reaches the port is ever unpickled,
    every message is signed (HMAC-SHA256) with a key node 0 draws for the run and writes,
    readable by its user only, to ``KEY_FILE`` in the project folder, which every node
    shares (as it shares ``runtime.work_dir``). A message with a wrong signature stops the
    node before it is unpickled.
    """

    def __init__(self, where: Cluster) -> None:
        # torch is imported only when several nodes
        from torch.distributed import DistNetworkError, TCPStore

        self.cluster = where
        self._key: bytes | None = None
        if where.node_rank == 0:  # a fresh key per run, before any message is sent
            self._key = secrets.token_bytes(32)
            KEY_FILE.unlink(missing_ok=True)
            descriptor = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(self._key)
        try:
            self.store = TCPStore(
                where.master_addr,
                where.control_port,
                world_size=where.nnodes,
                is_master=where.node_rank == 0,
                timeout=STAGE_WAIT if where.node_rank == 0 else CONNECT_WAIT,
                wait_for_workers=False,
            )
        except DistNetworkError as exc:
            raise LauncherError(
                f"node {where.node_rank}: node 0 did not open the stage hand-over on "
                f"{where.master_addr}:{where.control_port} within {CONNECT_WAIT}: it stopped "
                "before its first pipeline node (its log says why) or MASTER_ADDR/MASTER_PORT "
                "differ between the nodes"
            ) from exc
        self.store.set_timeout(STAGE_WAIT)  # from now on, stages may take hours
        self.count = 0

    def _sign(self, data: bytes) -> bytes:
        if self._key is None:  # nodes > 0: node 0 wrote it before sending the first message
            self._key = KEY_FILE.read_bytes()
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def send(self, job: Any | None) -> None:
        """Node 0: the next stage (``None``: the run is over)."""
        self._send(_DONE if job is None else pickle.dumps(job))

    def _send(self, data: bytes) -> None:
        self.store.set(f"stage/{self.count}", self._sign(data) + data)
        self.count += 1

    def receive(self) -> Any | None:
        """Nodes > 0: wait for the next stage; ``None`` once node 0 is done."""
        from torch.distributed import DistNetworkError

        try:
            message = self.store.get(f"stage/{self.count}")
        except DistNetworkError as exc:
            raise LauncherError(
                f"node {self.cluster.node_rank}: node 0 closed the stage hand-over before the "
                "end of the run: it stopped (its log says why); a re-run of every node resumes "
                "from the last checkpoint"
            ) from exc
        self.count += 1
        signature, data = message[:_SIGNATURE], message[_SIGNATURE:]
        if not hmac.compare_digest(signature, self._sign(data)):
            raise LauncherError(
                f"node {self.cluster.node_rank}: a stage message on port "
                f"{self.cluster.control_port} is not signed by node 0 of this run (another "
                f"job on that port, or {KEY_FILE.resolve()} not on storage all nodes share?)"
            )
        if data in (_DONE, _FAILED):
            self.store.set(f"done/{self.cluster.node_rank}", b"")  # node 0 may now exit
        if data == _FAILED:
            raise LauncherError(
                f"node {self.cluster.node_rank}: node 0 stopped the run with an error (its log "
                "says which); a re-run of every node resumes from the last checkpoint"
            )
        if data == _DONE:
            return None
        return pickle.loads(data)  # noqa: S301 - signed by node 0 of this run, checked above

    def finish(self, failed: bool = False) -> None:
        """Node 0: say the run is over (``failed``: with an error) and wait until every node
        heard it (the store lives in this process: exiting at once would cut the others off
        mid-read)."""
        self._send(_FAILED if failed else _DONE)
        others = [f"done/{rank}" for rank in range(1, self.cluster.nnodes)]
        try:
            self.store.wait(others, ACK_WAIT)
        except Exception as exc:  # noqa: BLE001 - a node that died already cannot answer
            logger.warning("not every node confirmed the end of the run: %s", exc)


_channel: StageChannel | None = None


def stage_channel(where: Cluster) -> StageChannel:
    """This process's channel (one per run), opened on first use."""
    global _channel  # noqa: PLW0603 - one run per process
    if _channel is None:
        _channel = StageChannel(where)
    return _channel


def close_channel(failed: bool = False) -> None:
    """Node 0: tell the other nodes the run is over (``failed``: node 0 stopped on an error)."""
    global _channel  # noqa: PLW0603 - one run per process
    if _channel is not None and _channel.cluster.node_rank == 0:
        _channel.finish(failed)
    _channel = None
