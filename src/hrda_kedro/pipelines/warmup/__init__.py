"""Source-only warmup: supervised HRDA training on the labelled source domain."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
