"""Prediction on own images: trainId labels, colour overlays and scale-attention maps."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
