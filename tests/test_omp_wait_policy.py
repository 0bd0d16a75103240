"""OpenMP threads must spin briefly, then sleep, in every process of the project.

Why: docs/performance.md, "A busy CPU".
"""

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


def _probe(probe: str = PROBE, **env: str) -> str:
    """``OMP_WAIT_POLICY GOMP_SPINCOUNT torch-loaded`` as a process importing the settings sees them."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    environ.update(PYTHONPATH=SRC, KEDRO_DISABLE_TELEMETRY="1", **env)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environ
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


FORK_PROBE = """
import os, sys, hrda_kedro, torch
torch.set_num_threads(2)
x = torch.randn(1, 8, 256, 256)
conv = torch.nn.Conv2d(8, 8, 3)
conv(x)  # the parent's OpenMP pool now exists
pid = os.fork()
if pid == 0:
    conv(x)  # hangs in libgomp unless the child runs one thread
    os._exit(0 if torch.get_num_threads() == 1 else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_computes_after_its_parent_used_openmp() -> None:
    # Kedro's ParallelRunner forks its workers on Linux; a notebook or a test that ran a
    # session first has started torch's OpenMP pool in the parent.
    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    environ.update(PYTHONPATH=SRC)
    result = subprocess.run(
        [sys.executable, "-c", FORK_PROBE],
        check=False,
        env=environ,
        timeout=120,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def test_every_benchmark_process_gets_the_brief_spin_before_torch() -> None:
    """Benchmark workers import torch inside their functions, some before the package: the
    shared helpers module sets the policy first, so no benchmark times libgomp's own spin."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    probe = (
        f"import os, sys; sys.path.insert(0, {str(benchmarks)!r}); import _common; "
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
        "'torch' in sys.modules)"
    )
    assert _probe(probe) == "PASSIVE 1000 False"
