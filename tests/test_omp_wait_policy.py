"""OpenMP threads must spin briefly, then sleep, in every process of the project (README, busy CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROBE = (
    "import os, sys, hrda_kedro.settings; "
    "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
    "'torch' in sys.modules)"
)


def _probe(**env: str) -> str:
    """``OMP_WAIT_POLICY GOMP_SPINCOUNT torch-loaded`` as a process importing the settings sees them."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    environ.update(PYTHONPATH=SRC, KEDRO_DISABLE_TELEMETRY="1", **env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=environ
    )
    return " ".join(result.stdout.split()[-3:])


def test_the_package_sets_a_brief_spin_before_torch_is_loaded() -> None:
    # Kedro imports the project's settings first; libgomp reads the variables when torch loads.
    assert _probe() == "PASSIVE 1000 False"


def test_an_explicit_wait_policy_wins_with_its_own_spin_count() -> None:
    # libgomp lets GOMP_SPINCOUNT override the policy: adding one would change what was asked.
    assert _probe(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE None False"
    assert _probe(OMP_WAIT_POLICY="PASSIVE") == "PASSIVE None False"


def test_an_explicit_spin_count_wins() -> None:
    assert _probe(GOMP_SPINCOUNT="0") == "PASSIVE 0 False"
