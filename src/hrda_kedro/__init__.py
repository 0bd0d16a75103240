"""hrda-kedro: HRDA domain-adaptive semantic segmentation as a Kedro project.

``hrda`` and ``data`` are plain PyTorch/Python libraries; ``pipelines`` is the Kedro layer.
"""

import os

# OpenMP threads that have no work wait asleep, not spinning. With spinning (libgomp's
# default), each of torch's intra-op threads burns its time slice at every barrier, and on
# a CPU that other processes also use, the thread that holds the real work waits behind
# it: with two competing processes on 2 cores, pseudo-label materialization ran 5 times
# slower than with passive waiting (benchmarks/busy_cpu.py, README "Performance"). libgomp
# reads the variable once, when torch loads it, so it is set here, before any torch import;
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1"
