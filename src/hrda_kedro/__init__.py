"""hrda-kedro: HRDA domain-adaptive semantic segmentation as a Kedro project.

``hrda`` and ``data`` are plain PyTorch/Python libraries; ``pipelines`` is the Kedro layer.
"""

import os
import warnings

# OpenMP threads that have no work wait asleep, not spinning. With spinning (libgomp's
# default), each of torch's intra-op threads burns its time slice at every barrier, and on
# a CPU that other processes also use, the thread that holds the real work waits behind
# it: with two competing processes on 2 cores, pseudo-label materialization ran 5 times
# slower than with passive waiting (benchmarks/busy_cpu.py, README "Performance"). libgomp
# reads the variable once, when torch loads it, so it is set here, before any torch import;
# an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1"

# Harmless third-party warnings that printed 14 lines each before the first node of every
# run: Kedro's config loader calls an OmegaConf API that OmegaConf has deprecated;
# `--pipeline` still works (the README notes the newer `--pipelines`); MLflow (optional
# extra) asks for type hints in a class of its own. Filtered by message, so any other warning
# still shows. Here, not in settings.py: Kedro imports the package before it runs a command,
# but the settings only when first read, which with plugins installed is after the warnings.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
warnings.filterwarnings("ignore", message=r"Option '--pipeline' is deprecated")
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method")
