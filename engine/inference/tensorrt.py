"""TensorRT backend: an FP16 engine per ONNX model, cached on disk, run on a CUDA stream.

Written against TensorRT 10's documented Python API (``trt.Builder``, ``trt.OnnxParser``,
optimisation profiles, ``build_serialized_network``, ``IExecutionContext.execute_async_v3`` with
tensor addresses). TensorRT cannot be installed on LiveFX's development machines, so this module
is exercised only where it can be (tests/test_tensorrt.py skips elsewhere, saying why).

- The engine is built from the ONNX with an optimisation profile whose batch dimension runs from
  1 to ``max_batch`` (frames of several sessions can share one launch); height and width are the
  ones asked for.
- It is serialised to ``EngineCache`` keyed by the model's sha256, the GPU's name, TensorRT's
  version and these settings. A cache file that fails its checks, or that TensorRT will not
  deserialise, is rebuilt; building logs a line before and after (it takes seconds to minutes).
- Device buffers are allocated once and their addresses set on the context once; ``run()`` copies
  the pinned host input up, launches, copies the output down, all on the backend's stream.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np

from engine.errors import BackendError, ModelError
from engine.gpu import driver as cd
from engine.inference.engine_cache import EngineCache, EngineKey

try:
    import tensorrt as trt
except ImportError as exc:
    raise BackendError(f"TensorRT is not installed (pip install 'livefx[gpu]'): {exc}") from exc

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 1 << 30


class _Logger(trt.ILogger):
    """TensorRT's messages into LiveFX's log (warnings and errors only)."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)

    def log(self, severity: Any, msg: str) -> None:
        if severity <= trt.ILogger.Severity.ERROR:
            log.error("tensorrt: %s", msg)
        elif severity <= trt.ILogger.Severity.WARNING:
            log.warning("tensorrt: %s", msg)


def build_engine(model: bytes, input_shape: tuple[int, ...], max_batch: int, logger: Any) -> bytes:
    """Parse ``model`` and build a serialised FP16 engine with a dynamic batch profile."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise ModelError(f"TensorRT cannot parse the model: {first}")
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise ModelError(
            f"expected a model with one input and one output, got {network.num_inputs} inputs "
            f"and {network.num_outputs} outputs"
        )
    name = network.get_input(0).name
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    one = (1, *input_shape[1:])
    profile = builder.create_optimization_profile()
    profile.set_shape(name, one, (max(1, input_shape[0]), *input_shape[1:]), (max_batch, *one[1:]))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError("TensorRT could not build an engine for the model (see the log)")
    return bytes(serialized)


class TensorRTBackend:
    """One ONNX model as a TensorRT engine. ``input``/``output`` are pinned host arrays."""

    name = "tensorrt"

    def __init__(
        self,
        model: bytes,
        *,
        input_shape: tuple[int, ...],
        max_batch: int = 8,
        cache: EngineCache | None = None,
        device: cd.Device | None = None,
        stream: cd.Stream | None = None,
        label: str = "model",
    ) -> None:
        if input_shape[0] > max_batch:
            raise BackendError(f"batch {input_shape[0]} is over max_batch {max_batch}")
        self.device = device or cd.Device()
        self.device.make_current()
        self.stream = stream or cd.Stream()
        self._logger = _Logger()
        self.cache = cache or EngineCache()
        key = EngineKey(
            model_sha256=hashlib.sha256(model).hexdigest(),
            device=self.device.name,
            runtime=f"tensorrt {trt.__version__}",
            settings=f"fp16 batch 1-{max_batch} {'x'.join(map(str, input_shape[1:]))}",
        )
        runtime = trt.Runtime(self._logger)
        blob = self.cache.load(key)
        engine = runtime.deserialize_cuda_engine(blob) if blob is not None else None
        if blob is not None and engine is None:
            log.warning("engine cache %s does not deserialise: rebuilding", self.cache.path(key))
        if engine is None:
            log.info(
                "building the TensorRT engine for %s on %s (first use; cached in %s) ...",
                label,
                self.device.name,
                self.cache.path(key),
            )
            t0 = time.perf_counter()
            blob = build_engine(model, input_shape, max_batch, self._logger)
            path = self.cache.store(key, blob)
            log.info("built in %.1f s: %s", time.perf_counter() - t0, path)
            engine = runtime.deserialize_cuda_engine(blob)
            if engine is None:
                raise BackendError("TensorRT built an engine it cannot deserialise")
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name, self.output_name = inputs[0], outputs[0]
        for n in (self.input_name, self.output_name):
            if engine.get_tensor_dtype(n) != trt.DataType.FLOAT:
                raise ModelError(f"model tensor {n!r} is not float32")
        if not self.context.set_input_shape(self.input_name, input_shape):
            raise BackendError(f"TensorRT refused input shape {input_shape}")
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        self._host_in = cd.PinnedArray(input_shape, np.float32)
        self._host_out = cd.PinnedArray(out_shape, np.float32)
        self.input, self.output = self._host_in.array, self._host_out.array
        self.input[...] = 0.0
        self.d_input = cd.DeviceBuffer(self.input.nbytes)
        self.d_output = cd.DeviceBuffer(self.output.nbytes)
        # Tensor addresses are set once: the buffers never move.
        self.context.set_tensor_address(self.input_name, self.d_input.ptr)
        self.context.set_tensor_address(self.output_name, self.d_output.ptr)
        self.run()  # warm-up, and a check that the engine runs at all

    def enqueue(self) -> None:
        """Launch on the backend's stream with the input already on the device (the cuda
        pipeline writes it there); returns at once."""
        if not self.context.execute_async_v3(self.stream.ptr):
            raise BackendError("TensorRT execute_async_v3 failed (see the log)")

    def run(self) -> np.ndarray:
        cd.copy_to_device(self.d_input, self._host_in, self.stream)
        self.enqueue()
        cd.copy_to_host(self._host_out, self.d_output, self.stream)
        self.stream.synchronize()
        return self.output

    def close(self) -> None:
        for b in (self.d_input, self.d_output):
            b.close()
        self._host_in.close()
        self._host_out.close()
