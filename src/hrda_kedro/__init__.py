"""hrda-kedro: HRDA domain-adaptive semantic segmentation as a Kedro project.

``hrda`` and ``data`` are plain PyTorch/Python libraries; ``pipelines`` is the Kedro layer.
"""

__version__ = "0.1"
