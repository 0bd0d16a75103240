"""Iterative self-training: namespaced rounds of pseudo-labelling and HRDA adaptation."""

from .pipeline import create_pipeline, round_template

__all__ = ["create_pipeline", "round_template"]
