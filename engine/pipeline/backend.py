"""Which backend runs a pipeline: ``cpu`` (NumPy, OpenCV, ONNX Runtime) or ``cuda`` (LiveFX's
own kernels on the GPU, the models on TensorRT, or on ONNX Runtime where TensorRT is missing).

``auto`` picks cuda only when a GPU, the kernels (prebuilt, or NVRTC to compile them) and an
inference runtime for the GPU (TensorRT) are all present, and the effect has a GPU path; it
says what it picked and why. Nothing here imports cuda-python unless a GPU path is asked about.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from engine.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from engine.config import PipelineConfig
    from engine.pipeline.pipeline import Pipeline

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda")
GPU_EFFECTS = ("blur", "replace", "colour")  # effects with a GPU path


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


@dataclass(frozen=True)
class BackendChoice:
    name: str  # cpu | cuda
    reason: str
    tensorrt: bool = False  # cuda: the models on TensorRT (else ONNX Runtime on the CPU)

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
    return GpuStatus(missing=None, gpu=device.name, kernels=kernels, tensorrt=trt_version)


def choose_backend(choice: str, effect: str, status: GpuStatus | None = None) -> BackendChoice:
    """Resolve ``auto``/``cpu``/``cuda`` for an effect. ``cuda`` where it cannot run is a
    ``BackendError`` (or ``ConfigError`` for an effect with no GPU path), one line each."""
    if choice not in BACKENDS:
        raise ConfigError(f"backend: {choice!r} is not one of {', '.join(BACKENDS)}")
    if choice == "cpu":
        return BackendChoice("cpu", "asked for")
    st = status if status is not None else gpu_status()
    why_not = no_gpu_path(effect)
    full_path = f"{st.gpu}, kernels {st.kernels}, TensorRT {st.tensorrt}"
    if choice == "cuda":
        if st.missing is not None:
            raise BackendError(f"backend cuda: {st.missing}")
        if why_not is not None:
            raise ConfigError(f"backend cuda: {why_not}; use --backend cpu or auto")
        if st.tensorrt is None:
            return BackendChoice(
                "cuda",
                f"{st.gpu}, kernels {st.kernels}; models on ONNX Runtime (CPU): "
                "TensorRT is not installed",
            )
        return BackendChoice("cuda", full_path, tensorrt=True)
    if st.missing is not None:
        return BackendChoice("cpu", f"no GPU path: {st.missing}")
    if st.tensorrt is None:
        return BackendChoice(
            "cpu",
            f"{st.gpu} present but TensorRT is not installed (--backend cuda runs the "
            "kernels on it with the models on ONNX Runtime)",
        )
    if why_not is not None:
        return BackendChoice("cpu", why_not)
    return BackendChoice("cuda", full_path, tensorrt=True)


def make_pipeline(
    config: PipelineConfig, choice: BackendChoice | None = None, *, live: bool = False
) -> Pipeline:
    """The pipeline for ``config.backend`` (resolved by ``choose_backend``; logged). ``live``:
    a real-time session (the body prior runs on a thread of its own; files run it inline)."""
    from engine.pipeline.pipeline import Pipeline

    c = choice or choose_backend(config.backend, config.effect.name)
    log.info("%s", c.describe())
    if c.name == "cuda":
        from engine.pipeline.cuda_pipeline import CudaPipeline

        p: Pipeline = CudaPipeline(config, tensorrt=c.tensorrt)
        p.backend_reason = c.reason
    else:
        from engine.ops import fused

        p = Pipeline(config, body_async=live)
        p.backend_reason = f"{c.reason}; {fused.REASON}"  # the compiled loops, or why not
    return p
