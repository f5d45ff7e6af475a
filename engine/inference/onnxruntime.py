"""ONNX Runtime on the CPU: session built once, input and output bound once (IOBinding)."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort

from engine.errors import ModelError
from engine.models.registry import onnxruntime_graph

log = logging.getLogger(__name__)


class DynamicShapeError(ModelError):
    """The model takes any size in some dimension, and no input shape was given."""


def _resolve(
    shape: list[int | str | None], given: tuple[int, ...] | None, what: str
) -> tuple[int, ...]:
    if given is not None:
        if len(given) != len(shape):
            raise ModelError(f"{what}: the model has rank {len(shape)}, asked for shape {given}")
        for dim, want in zip(shape, given, strict=True):
            if isinstance(dim, int) and dim > 0 and dim != want:
                raise ModelError(f"{what}: the model fixes shape {shape}, asked for {given}")
        return tuple(int(d) for d in given)
    if any(not (isinstance(d, int) and d > 0) for d in shape[1:]):
        raise DynamicShapeError(
            f"{what}: the model's input shape {shape} is dynamic; give the size"
        )
    return (1, *(int(d) for d in shape[1:]))  # type: ignore[arg-type]


def cpu_session(
    model: bytes, threads: int, what: str = "the model", batch: int | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime CPU session as LiveFX runs every model: sequential, ``threads`` intra-op
    threads, all graph optimisations, denormals as zero; a load failure is a ``ModelError``.
    ``batch``: the model's symbolic batch dimension ``N`` fixed at this size (the session is
    optimised for it, as for a graph made with that batch)."""
    opts = ort.SessionOptions()
    if batch is not None:
        opts.add_free_dimension_override_by_name("N", batch)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Denormal floats are slow on x86 and meaningless for a mask.
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    try:
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"ONNX Runtime cannot load {what}: {first}") from exc


class OnnxRuntimeBackend:
    """One ONNX model on ONNX Runtime's CPU provider with float32 I/O.

    ``threads`` is ONNX Runtime's intra-op thread count (0 = its default, one per core). A shipped
    segmenter's converted bytes run as its CPU graph (``engine/models/fold.py``: the same network,
    folded for ONNX Runtime's NCHWc layout, batch 1) unless ``cpu_graph`` is false or the batch
    asked for is not 1.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: bytes,
        *,
        input_shape: tuple[int, ...] | None = None,
        threads: int = 1,
        cpu_graph: bool = True,
    ) -> None:
        if cpu_graph and (input_shape is None or input_shape[0] == 1):
            model = onnxruntime_graph(model)
        self.session = cpu_session(model, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"expected a model with one input and one output, got {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs)}) and {len(outputs)} outputs"
            )
        for t, what in ((inputs[0], "input"), (outputs[0], "output")):
            if t.type != "tensor(float)":
                raise ModelError(f"model {what} {t.name!r} is {t.type}, expected tensor(float)")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        shape = _resolve(list(inputs[0].shape), input_shape, f"model input {self.input_name!r}")
        self.input = np.zeros(shape, np.float32)
        # The output shape may depend on the input's: find it with one run (also the warm-up).
        try:
            first = self.session.run([self.output_name], {self.input_name: self.input})[0]
        except Exception as exc:
            raise ModelError(f"the model does not run on input {shape}: {exc}") from exc
        self.output = np.empty(first.shape, np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_input(
            self.input_name, "cpu", 0, np.float32, list(shape), self.input.ctypes.data
        )
        self._binding.bind_output(
            self.output_name, "cpu", 0, np.float32, list(self.output.shape), self.output.ctypes.data
        )
        log.debug("onnxruntime: %s -> %s, %d threads", shape, self.output.shape, threads)

    def run(self) -> np.ndarray:
        self.session.run_with_iobinding(self._binding)
        return self.output
