"""hrda-kedro: HRDA domain-adaptive semantic segmentation as a Kedro project.

``hrda`` and ``data`` are plain PyTorch/Python libraries; ``pipelines`` is the Kedro layer.
"""

import logging
import os
import re
import sys
import warnings

# OpenMP threads that have no work spin only briefly, then sleep. libgomp's default spins
# for about 3 ms at every barrier: on a CPU that other processes also use, each of torch's
# intra-op threads burns its time slice there while the thread holding the real work waits
# (a training step next to two competing processes: 9x slower; pseudo-label
# materialization 5x). Sleeping at once (OMP_WAIT_POLICY=PASSIVE) fixes that but pays a
# wake-up at each of a training step's thousands of parallel regions: 1.15-1.4x slower
# training on an idle machine. A spin of 1000 rounds (GOMP_SPINCOUNT, about 10 us) kept the
# idle speed within about 12 % of the default's and the busy speed of passive waiting
# (benchmarks/busy_cpu.py; docs/performance.md, "A busy CPU"). PASSIVE stays for OpenMP
# runtimes other than libgomp. libgomp reads both once, when torch loads it, so they are set
# here, before any torch import; any value in the environment wins (an explicit
# OMP_WAIT_POLICY alone gets libgomp's own spin count for it).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _one_torch_thread_after_fork() -> None:
    """A forked child (Kedro's ParallelRunner workers on Linux) cannot use the OpenMP thread
    pool its parent started: libgomp is not fork-safe, and the child's first parallel
    region waits forever for threads that were not copied. One thread runs no parallel
    region; the workers share the cores anyway."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_after_fork)

__version__ = "0.1"

# Harmless third-party warnings, kept off the console of every run.
#
# Each printed about 14 lines before the first node: Kedro's config loader calls an OmegaConf
# API that OmegaConf has deprecated; `--pipeline` still works (the README notes the newer
# `--pipelines`); MLflow (optional extra) asks for type hints in a class of its own.
# Matched by message, so any other warning still shows.
#
# Python's warning filters alone do not hold them: packages imported after ours put filters
# of their own in front (kedro-datasets shows every Kedro deprecation; MLflow shows each
# UserWarning once), so the same messages are also dropped where Kedro's logging prints
# warnings, the `py.warnings` logger. In code, not in `conf/logging.yml`: Kedro refuses the
# `()` factory key there, and a filter of the standard library matches logger names only.
HARMLESS_WARNINGS = (
    r"register_new_resolver\(\) is deprecated",
    r"Option '--pipeline' is deprecated",
    r"Add type hints to the `predict` method",
)
_HARMLESS = re.compile("|".join(HARMLESS_WARNINGS))


class HarmlessWarnings(logging.Filter):
    """Drops the harmless warnings' records from the ``py.warnings`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _HARMLESS.search(record.getMessage()) is None


def ignore_harmless_warnings() -> None:
    """Both filters, once per process (the package's import)."""
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{pattern}")
    logging.getLogger("py.warnings").addFilter(HarmlessWarnings())


ignore_harmless_warnings()
