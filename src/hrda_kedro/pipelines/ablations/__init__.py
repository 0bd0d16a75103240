"""Ablation study: variants x seeds as namespaced instances of one train-and-evaluate template."""

from .pipeline import create_pipeline, run_template

__all__ = ["create_pipeline", "run_template"]
