"""Iterative self-training: namespaced rounds of pseudo-labelling and HRDA adaptation."""

from .pipeline import create_pipeline, round_template, rounds_pipeline

__all__ = ["create_pipeline", "round_template", "rounds_pipeline"]
