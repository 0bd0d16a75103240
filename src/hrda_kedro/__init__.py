"""hrda-kedro: HRDA domain-adaptive semantic segmentation as a Kedro project.

``hrda`` and ``data`` are plain PyTorch/Python libraries; ``pipelines`` is the Kedro layer.
"""

import warnings

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
