"""Which backend runs a pipeline: ``cpu`` (NumPy, OpenCV, ONNX Runtime) or ``cuda`` (the
whole frame on the GPU, on LiveFX's own kernels), and how the models run on the GPU
(``--model-runtime``): ``kernels`` (LiveFX's net kernels inside the frame's CUDA graph, the
default), ``tensorrt`` (where it is installed) or ``onnxruntime`` (on the CPU, between two
graphs).

``auto`` picks cuda wherever a GPU and the kernels (prebuilt, or NVRTC to compile them) are
present, the model runtime asked for can run, and the effect has a GPU path; it says what it
picked and why. Nothing here imports cuda-python unless a GPU path is asked about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from engine.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from engine.config import PipelineConfig
    from engine.inference.base import InferenceBackend
    from engine.inference.batch import SharedModels
    from engine.models.registry import ModelSpec
    from engine.pipeline.pipeline import Pipeline

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda")
MODEL_RUNTIMES = ("kernels", "tensorrt", "onnxruntime")
GPU_EFFECTS = ("blur", "replace", "colour", "mask", "none", "gan")  # effects with a GPU path


def no_gpu_path(effect: str) -> str | None:
    """Why ``effect`` cannot run on the cuda backend (None: it can)."""
    if effect in GPU_EFFECTS:
        return None
    return f"effect {effect!r} has no GPU path (those that do: {', '.join(GPU_EFFECTS)})"


@dataclass(frozen=True)
class GpuStatus:
    """What this machine has for the GPU path."""

    missing: str | None  # why the GPU path cannot run at all (None: it can)
    gpu: str = ""  # the device's name
    kernels: str = ""  # "prebuilt livefx.fatbin" or "NVRTC at start-up"
    tensorrt: str | None = None  # TensorRT's version, None where it is not importable
    net: str | None = None  # why the kernels runtime cannot read models (None: it can)


@dataclass(frozen=True)
class BackendChoice:
    name: str  # cpu | cuda
    reason: str
    model_runtime: str = "kernels"  # cuda: kernels | tensorrt | onnxruntime

    @property
    def tensorrt(self) -> bool:
        return self.name == "cuda" and self.model_runtime == "tensorrt"

    def describe(self) -> str:
        return f"backend {self.name} ({self.reason})"


@lru_cache(maxsize=1)
def gpu_status() -> GpuStatus:
    """Looked at once per process: cuda-python, a device, the kernels, TensorRT."""
    try:
        from engine.gpu import driver as cd

        device = cd.Device()
    except BackendError as exc:
        return GpuStatus(missing=str(exc))
    from engine.gpu.module import FATBIN

    if FATBIN.exists():
        kernels = f"prebuilt {FATBIN.name}"
    else:
        try:
            from cuda.bindings import nvrtc  # noqa: F401
        except ImportError:
            return GpuStatus(
                missing=f"no kernels: {FATBIN} is not built (make kernels) and NVRTC is missing",
                gpu=device.name,
            )
        kernels = "NVRTC at start-up"
    try:
        import tensorrt

        trt_version: str | None = str(tensorrt.__version__)
    except ImportError:
        trt_version = None
    return GpuStatus(
        missing=None, gpu=device.name, kernels=kernels, tensorrt=trt_version, net=_net_missing()
    )


def _net_missing() -> str | None:
    try:
        import onnx  # noqa: F401  (the kernels runtime reads the ONNX graphs with it)
    except ImportError:
        return "the onnx package is not installed (pip install onnx)"
    return None


def runtime_missing(runtime: str, st: GpuStatus) -> str | None:
    """Why the model runtime ``runtime`` cannot run on this GPU path (None: it can)."""
    if runtime == "tensorrt" and st.tensorrt is None:
        return (
            "TensorRT is not installed (--model-runtime kernels runs the models on LiveFX's "
            "kernels)"
        )
    if runtime == "kernels" and st.net is not None:
        return f"the kernels runtime: {st.net}"
    return None


def _runtime_reason(runtime: str, st: GpuStatus) -> str:
    models = {
        "kernels": "models on LiveFX's kernels in the frame's CUDA graph",
        "tensorrt": f"models on TensorRT {st.tensorrt}",
        "onnxruntime": "models on ONNX Runtime (CPU)",
    }[runtime]
    return f"{st.gpu}, kernels {st.kernels}; {models}"


def choose_backend(
    choice: str, effect: str, status: GpuStatus | None = None, *, runtime: str = "kernels"
) -> BackendChoice:
    """Resolve ``auto``/``cpu``/``cuda`` for an effect and a model runtime. ``cuda`` where it
    cannot run is a ``BackendError`` (or ``ConfigError`` for an effect with no GPU path), one
    line each."""
    if choice not in BACKENDS:
        raise ConfigError(f"backend: {choice!r} is not one of {', '.join(BACKENDS)}")
    if runtime not in MODEL_RUNTIMES:
        raise ConfigError(f"model_runtime: {runtime!r} is not one of {', '.join(MODEL_RUNTIMES)}")
    if choice == "cpu":
        return BackendChoice("cpu", "asked for")
    st = status if status is not None else gpu_status()
    why_not = no_gpu_path(effect)
    if choice == "cuda":
        if st.missing is not None:
            raise BackendError(f"backend cuda: {st.missing}")
        if why_not is not None:
            raise ConfigError(f"backend cuda: {why_not}; use --backend cpu or auto")
        missing = runtime_missing(runtime, st)
        if missing is not None:
            raise BackendError(f"backend cuda: {missing}")
        return BackendChoice("cuda", _runtime_reason(runtime, st), runtime)
    if st.missing is not None:
        return BackendChoice("cpu", f"no GPU path: {st.missing}")
    if why_not is not None:
        return BackendChoice("cpu", why_not)
    missing = runtime_missing(runtime, st)
    if missing is not None:
        return BackendChoice("cpu", f"{st.gpu} present but {missing}")
    return BackendChoice("cuda", _runtime_reason(runtime, st), runtime)


def make_pipeline(
    config: PipelineConfig,
    choice: BackendChoice | None = None,
    *,
    live: bool = False,
    models: SharedModels | None = None,
) -> Pipeline:
    """The pipeline for ``config.backend`` (resolved by ``choose_backend``; logged). ``live``:
    a real-time session (the body prior runs on a thread of its own; files run it inline).
    ``models``: the server's shared inference workers (the cpu pipeline's segmenter on ONNX
    Runtime runs there, batched with the other sessions', instead of on a session of its own)."""
    from engine.pipeline.pipeline import Pipeline

    c = choice or choose_backend(config.backend, config.effect.name, runtime=config.model_runtime)
    log.info("%s", c.describe())
    if c.name == "cuda" and config.backend == "auto":
        from engine.pipeline.cuda_pipeline import check_gpu_effect

        try:  # the effect as configured (a user's generator, a runtime) may have no GPU path
            check_gpu_effect(replace(config, model_runtime=c.model_runtime))
        except ConfigError as exc:
            c = BackendChoice("cpu", str(exc).removeprefix("backend cuda: "))
            log.info("%s", c.describe())
    if c.name == "cuda":
        from engine.pipeline.cuda_pipeline import CudaPipeline

        gpu_models = models.gpu() if models is not None and c.model_runtime == "kernels" else None
        p: Pipeline = CudaPipeline(config, model_runtime=c.model_runtime, models=gpu_models)
        p.backend_reason = c.reason
        if p.batched:  # type: ignore[attr-defined]
            p.backend_reason += "; the segmenter on the shared GPU worker, batched across sessions"
    else:
        from engine.ops import fused

        factory = None
        if models is not None and config.inference.backend == "onnxruntime":
            factory = shared_factory(models, config.inference.threads)
        p = Pipeline(config, factory, body_async=live)
        p.backend_reason = f"{c.reason}; {fused.REASON}"  # the compiled loops, or why not
        if factory is not None:
            p.backend_reason += "; the segmenter on the shared, batching inference worker"
    return p


def shared_factory(models: SharedModels, threads: int) -> Callable[[ModelSpec], InferenceBackend]:
    """The cpu pipeline's segmenters from ``models`` (engine.inference.batch)."""
    from engine.models.registry import load_model

    def factory(spec: ModelSpec) -> InferenceBackend:
        shape = (1, 3, spec.height, spec.width)
        return models.backend(load_model(spec.name), shape, threads, spec.name)

    return factory
