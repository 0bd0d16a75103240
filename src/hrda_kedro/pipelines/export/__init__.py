"""Export the trained model for deployment: safetensors + JSON config, and ONNX."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
