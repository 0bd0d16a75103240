"""Evaluation: sliding-window inference on target val, confusion matrices, mIoU reports."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
