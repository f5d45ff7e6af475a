"""Inference backends: one protocol, one implementation per runtime.

``base.InferenceBackend`` is what the pipeline calls; ``onnxruntime.OnnxRuntimeBackend`` runs on the
CPU anywhere. GPU backends (TensorRT) are imported only when chosen.
"""

from engine.inference.base import InferenceBackend, create_backend

__all__ = ["InferenceBackend", "create_backend"]
