"""Iterative self-training: namespaced rounds of pseudo-labelling and HRDA adaptation."""

from .pipeline import create_pipeline, final_model, round_template, rounds_pipeline

__all__ = ["create_pipeline", "final_model", "round_template", "rounds_pipeline"]
