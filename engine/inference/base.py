"""The InferenceBackend protocol.

A backend owns one loaded model with a fixed input shape. The caller writes into ``input``
(preallocated once, in the model's own layout) and calls ``run()``, which returns ``output``,
also preallocated and reused: the next ``run()`` overwrites it. Nothing is allocated per call.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from engine.errors import BackendError


@runtime_checkable
class InferenceBackend(Protocol):
    name: str
    input: np.ndarray
    output: np.ndarray

    def run(self) -> np.ndarray:
        """Run the model on ``input``; return ``output`` (valid until the next call)."""
        ...


def create_backend(
    kind: str,
    model: bytes,
    *,
    input_shape: tuple[int, ...] | None = None,
    threads: int = 1,
) -> InferenceBackend:
    """Make a backend by name; GPU runtimes are imported only here, on demand."""
    if kind == "onnxruntime":
        from engine.inference.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, input_shape=input_shape, threads=threads)
    if kind == "tensorrt":
        if input_shape is None:
            raise BackendError("the tensorrt backend needs the input shape")
        # Raises BackendError, one line, where TensorRT, cuda-python or a GPU is missing.
        from engine.inference.tensorrt import TensorRTBackend

        return TensorRTBackend(model, input_shape=input_shape)
    raise BackendError(f"unknown inference backend {kind!r}; available: onnxruntime, tensorrt")
