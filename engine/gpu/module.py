"""The kernels of ``kernels/livefx.cu`` on the device: the prebuilt fatbin (``make kernels``), or
NVRTC at start-up, and ``Gpu``, the device and its module shared by every session.

Imports cuda-python (through ``engine.gpu.driver``): import it only where the GPU path is chosen.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path
from typing import Any

from engine.errors import BackendError
from engine.gpu import driver as cd
from engine.gpu.launch import SMEM_DEFAULT_LIMIT, _arg

cu = cd.cu
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
KERNEL_SOURCES = ROOT / "kernels"
FATBIN = ROOT / "build" / "kernels" / "livefx.fatbin"


def _include_dirs() -> list[str]:
    """Folders that hold cuda_fp16.h for NVRTC: the toolkit's, or the pip wheels'."""
    found: list[Path] = []
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            found.append(Path(os.environ[env]) / "include")
    found.append(Path("/usr/local/cuda/include"))
    for entry in sys.path:
        base = Path(entry) / "nvidia"
        if base.is_dir():
            found.extend(sorted(base.glob("*/include")))
    return [str(d) for d in found if (d / "cuda_fp16.h").exists()]


def _headers() -> tuple[list[bytes], list[bytes]]:
    """Every header of kernels/ (``*.cuh``), contents and names, for NVRTC to resolve
    livefx.cu's includes (and theirs) without the file system."""
    paths = sorted(KERNEL_SOURCES.glob("*.cuh"))
    return [p.read_bytes() for p in paths], [p.name.encode() for p in paths]


def compile_nvrtc(compute_capability: tuple[int, int]) -> bytes:
    """kernels/livefx.cu compiled by NVRTC into a cubin for this device (no nvcc needed)."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise BackendError(f"NVRTC is not available (cuda-python's nvrtc): {exc}") from exc

    def check(result: Any, call: str) -> Any:
        status, *values = result
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise BackendError(f"{call} failed: {status}")
        return values[0] if len(values) == 1 else None

    src = (KERNEL_SOURCES / "livefx.cu").read_bytes()
    headers, names = _headers()
    try:
        prog = check(
            nvrtc.nvrtcCreateProgram(src, b"livefx.cu", len(headers), headers, names),
            "nvrtcCreateProgram",
        )
    except RuntimeError as exc:  # cuda-python's own: libnvrtc is not on this machine
        raise BackendError(f"NVRTC is not available: {str(exc).splitlines()[0]}") from exc
    major, minor = compute_capability
    opts = [b"--std=c++17", f"--gpu-architecture=sm_{major}{minor}".encode()]
    opts += [b"-I" + d.encode() for d in _include_dirs()]
    try:
        (status,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            text = b" " * size
            check(nvrtc.nvrtcGetProgramLog(prog, text), "nvrtcGetProgramLog")
            lines = text.decode(errors="replace").strip().splitlines()
            first = next((ln for ln in lines if "error" in ln), lines[0] if lines else str(status))
            raise BackendError(
                f"NVRTC cannot compile kernels/livefx.cu for sm_{major}{minor}: {first}"
            )
        size = check(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        check(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    return cubin


class Module:
    """The kernels loaded on ``device``: the prebuilt fatbin (``make kernels``) where it has code
    for the device (SASS, or PTX the driver compiles), else NVRTC at start-up.

    ``nvrtc=True`` skips the fatbin (the tests use it to check the fallback)."""

    def __init__(self, device: cd.Device, *, fatbin: Path = FATBIN, nvrtc: bool = False) -> None:
        self.device = device
        device.make_current()
        self.handle: Any = None
        self.source = ""
        cc = "sm_{}{}".format(*device.compute_capability)
        if not nvrtc:
            if fatbin.exists():
                self._image = fatbin.read_bytes()
                status, handle = cu.cuModuleLoadData(self._image)
                if status == cu.CUresult.CUDA_SUCCESS:
                    self.handle, self.source = handle, f"prebuilt {fatbin.name}"
                else:
                    log.info("kernels: %s has no code for %s (%s); NVRTC", fatbin.name, cc, status)
            else:
                log.info("kernels: %s is not built (make kernels); compiling with NVRTC", fatbin)
        if self.handle is None:
            self._image = compile_nvrtc(device.compute_capability)
            self.handle = cd.check(cu.cuModuleLoadData(self._image), "cuModuleLoadData (NVRTC)")
            self.source = f"NVRTC ({cc})"
        self._functions: dict[str, Any] = {}
        self._smem: dict[str, int] = {}

    def function(self, name: str) -> Any:
        fn = self._functions.get(name)
        if fn is None:
            fn = self._functions[name] = cd.check(
                cu.cuModuleGetFunction(self.handle, name.encode()), f"cuModuleGetFunction {name}"
            )
        return fn

    def launch(
        self,
        name: str,
        grid: tuple[int, int, int],
        block: tuple[int, int, int],
        stream: Any,
        *args: Any,
        smem: int = 0,
    ) -> None:
        """Launch ``name`` with ``args``: c_void_p for pointers, int → int, float → float,
        ctypes values as they are. The arguments are copied at the launch (and at capture)."""
        fn = self.function(name)
        if smem > SMEM_DEFAULT_LIMIT and self._smem.get(name, SMEM_DEFAULT_LIMIT) < smem:
            attr = cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            cd.check(cu.cuFuncSetAttribute(fn, attr, smem), f"cuFuncSetAttribute {name}")
            self._smem[name] = smem
        holders = [_arg(a) for a in args]
        ptrs = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        cd.check(
            cu.cuLaunchKernel(fn, *grid, *block, smem, stream, ctypes.addressof(ptrs), 0),
            f"cuLaunchKernel {name}",
        )


class Gpu:
    """The device and its kernels, shared by every session of the process."""

    _shared: Gpu | None = None

    def __init__(self, ordinal: int = 0, *, nvrtc: bool = False) -> None:
        self.device = cd.Device(ordinal)
        self.module = Module(self.device, nvrtc=nvrtc)

    @classmethod
    def shared(cls) -> Gpu:
        if cls._shared is None:
            cls._shared = cls()
            log.info("GPU: %s, kernels %s", cls._shared.device.name, cls._shared.module.source)
        return cls._shared
