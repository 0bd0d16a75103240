"""OpenMP threads must wait asleep in every process of the project (README, busy CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROBE = (
    "import os, sys, hrda_kedro.settings; "
    "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
)


def _probe(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update(PYTHONPATH=SRC, KEDRO_DISABLE_TELEMETRY="1", **env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=environ
    )
    return result.stdout.split()[-2] + " " + result.stdout.split()[-1]


def test_the_package_sets_passive_waiting_before_torch_is_loaded() -> None:
    # Kedro imports the project's settings first; libgomp reads the variable when torch loads.
    assert _probe() == "PASSIVE False"


def test_an_explicit_wait_policy_wins() -> None:
    assert _probe(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"
