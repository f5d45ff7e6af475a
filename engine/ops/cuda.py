"""The GPU path: LiveFX's own kernels (``kernels/livefx.cu``) on cuda-python's driver API.

One ``FrameChain`` per session and resolution holds every device buffer and two pinned host
buffers, allocated once; a frame goes to the GPU in one host-to-device copy of its packed
yuv420p planes and comes back in one device-to-host copy of the output planes. Between the
copies every stage is one of our kernels, launched on the session's stream:

    pre  (one CUDA graph per pyramid depth): upload → halvings (Y; U and V together) as far as
         the model and the blur need → preprocess (planes → NCHW RGB in [0, 1], fp32 or fp16,
         and the luma guide at the mask's size, one launch) [→ model input to the host, when
         the model runs on ONNX Runtime]
    model: TensorRT on the same stream, or ONNX Runtime on the CPU
    post (one CUDA graph per setting): [mask to the device] → guided filter (its four box
         means in one launch pair, a and b's in another; its output fused with temporal
         smoothing and the ramp) → for the blur: at its pyramid level, x·share of every plane
         and the share (one launch), both box passes over them (one launch each), the ratios
         (one launch) → one last launch: both uint8 mattes, the background (the blurred levels
         upsampled, a still image uploaded once, or a colour) and the composite of Y, U and V
         → download

Each stage follows ``engine.ops.reference`` (the tests hold it to it); the matte and blur
algorithm is the cpu backend's (``engine.ops.cpu``), with float pyramid levels where the cpu
rounds each level to uint8.

This module imports cuda-python: import it only where the GPU path is chosen.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BackendError
from engine.frame import FrameBuffer, chroma_size
from engine.inference import cuda_driver as cd
from engine.ops import reference
from engine.ops.color import yuv_to_rgb

cu = cd.cu
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
KERNEL_SOURCES = ROOT / "kernels"
FATBIN = ROOT / "build" / "kernels" / "livefx.fatbin"

P = ctypes.c_void_p
BLOCK_2D = (32, 8, 1)
BLOCK_1D = 256
PX = 4  # output pixels per thread along x in the upsampling kernels (LFX_PX)
BOX_H_BLOCK = 128
BOX_V_BLOCK = (32, 8, 1)
SMEM_DEFAULT_LIMIT = 48 * 1024


class Background(ctypes.Structure):
    """``Background`` of kernels/livefx.cu (lfx_finish), passed by value."""

    _fields_ = [
        ("mode", ctypes.c_int),  # 0 colour, 1 planes (frame size, packed), 2 blurred levels
        ("cy", ctypes.c_int),
        ("cu", ctypes.c_int),
        ("cv", ctypes.c_int),
        ("y", ctypes.c_void_p),
        ("u", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("yw", ctypes.c_int),
        ("yh", ctypes.c_int),
        ("cw", ctypes.c_int),
        ("ch", ctypes.c_int),
    ]


class ColorMatrix(ctypes.Structure):
    """``lfx::ColorMatrix``: rgb01 = m (yuv - off), passed to the preprocess kernels by value."""

    _fields_ = [("m", ctypes.c_float * 9), ("off", ctypes.c_float * 3)]


def color_matrix(colorspace: str, full_range: bool) -> ColorMatrix:
    mat, off = yuv_to_rgb(colorspace, full_range)
    m = np.asarray(mat, np.float64).ravel()
    return ColorMatrix((ctypes.c_float * 9)(*m), (ctypes.c_float * 3)(*np.asarray(off)))


# -- the module: prebuilt fatbin, or NVRTC at start-up ---------------------------------------


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
    header = (KERNEL_SOURCES / "pixel.cuh").read_bytes()
    try:
        prog = check(
            nvrtc.nvrtcCreateProgram(src, b"livefx.cu", 1, [header], [b"pixel.cuh"]),
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


def _arg(value: Any) -> Any:
    if isinstance(value, (ctypes._SimpleCData, ctypes.Structure)):
        return value
    if isinstance(value, (bool, int, np.integer)):
        return ctypes.c_int(int(value))
    if isinstance(value, (float, np.floating)):
        return ctypes.c_float(float(value))
    raise TypeError(f"kernel argument of type {type(value).__name__}")


def grid2(w: int, h: int, z: int = 1) -> tuple[int, int, int]:
    return ((w + BLOCK_2D[0] - 1) // BLOCK_2D[0], (h + BLOCK_2D[1] - 1) // BLOCK_2D[1], z)


def grid1(n: int) -> tuple[int, int, int]:
    return ((n + BLOCK_1D - 1) // BLOCK_1D, 1, 1)


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


# -- buffers ---------------------------------------------------------------------------------


class Buffers:
    """Device buffers of one chain, freed together."""

    def __init__(self) -> None:
        self._all: list[cd.DeviceBuffer] = []

    def alloc(self, nbytes: int) -> int:
        buf = cd.DeviceBuffer(nbytes)
        self._all.append(buf)
        return buf.ptr

    def close(self) -> None:
        for b in self._all:
            b.close()
        self._all.clear()


@dataclass
class PlaneLevels:
    """One plane of the frame and its float halvings on the device (level 0 is the uint8 plane
    inside the uploaded frame)."""

    ptr: int  # level 0, uint8
    width: int
    height: int
    # (ptr, width, height) of levels 1, 2, … (float32), made as deep as needed
    levels: list[tuple[int, int, int]] = field(default_factory=list)

    def level(self, k: int) -> tuple[int, int, int, int, str]:
        """(ptr, stride in elements, width, height, type) of level k."""
        if k == 0:
            return self.ptr, self.width, self.width, self.height, "u8"
        ptr, w, h = self.levels[k - 1]
        return ptr, w, w, h, "f32"


@dataclass(frozen=True)
class ChainSettings:
    """What a captured post-model graph bakes in; a new value captures a new graph."""

    guided: bool
    radius: int
    eps: float
    smoothing: float
    threshold: float
    feather: float
    background: str  # blur | image | colour | frame (the frame itself: no blur)
    blur_strength: float = 0.0
    blur_bias: int = 0
    colour: tuple[int, int, int] = (0, 128, 128)  # Y, U, V code values


@dataclass
class Op:
    """One launch (or copy) of a frame's sequence: its name and the bytes it must move at the
    least (each input read once, each output written once)."""

    name: str
    nbytes: int
    run: Callable[[], None]


class FrameChain:
    """Every buffer and launch of one session at one resolution.

    ``model_io`` gives the model's device input and output buffers (TensorRT's); without it the
    chain makes its own and copies the model input to ``model_input`` (pinned, host) and the
    mask from ``mask`` (pinned, host) around an ONNX Runtime run on the CPU.
    """

    MAX_GRAPHS = 8

    def __init__(
        self,
        gpu: Gpu,
        stream: cd.Stream,
        width: int,
        height: int,
        *,
        colorspace: str,
        full_range: bool,
        mask_size: tuple[int, int],
        model_dtype: str = "f32",
        model_io: tuple[int, int] | None = None,
    ) -> None:
        if model_dtype not in ("f32", "f16"):
            raise BackendError(f"model input type {model_dtype!r} is not f32 or f16")
        self.gpu, self.module, self.stream = gpu, gpu.module, stream
        gpu.device.make_current()
        self.width, self.height = width, height
        self.colorspace, self.full_range = colorspace, full_range
        cw, ch = self.chroma = chroma_size(width, height)
        self.mask_w, self.mask_h = mask_size
        self.model_dtype = model_dtype
        self._cm = color_matrix(colorspace, full_range)
        self._bufs = Buffers()
        self._graphs: dict[Any, Any] = {}
        self._depths: dict[ChainSettings, tuple[int, int]] = {}
        self._first = True
        self._first_set: bool | None = None
        self.has_mask = False  # the model's output buffer holds a mask (set by the caller)
        self._still: int | None = None
        self._closed = False

        n_y, n_c = width * height, cw * ch
        self.frame_bytes = n_y + 2 * n_c
        self.host_in = cd.PinnedArray((self.frame_bytes,), np.uint8)
        self.host_out = cd.PinnedArray((self.frame_bytes,), np.uint8)
        self.d_in = self._bufs.alloc(self.frame_bytes)
        self.d_out = self._bufs.alloc(self.frame_bytes)
        self.in_frame = self._frame_view(self.host_in.array)
        self.out_frame = self._frame_view(self.host_out.array)

        # Pyramid levels: as many as the model's resample and the deepest blur need.
        self.planes = [
            PlaneLevels(self.d_in, width, height),
            PlaneLevels(self.d_in + n_y, cw, ch),
            PlaneLevels(self.d_in + n_y + n_c, cw, ch),
        ]
        mw, mh = self.mask_w, self.mask_h
        self.k_model = [reference.halvings(p.width, p.height, mw, mh) for p in self.planes]

        # The model's input and output.
        m_elems = 3 * mw * mh
        self.model_nbytes = m_elems * (4 if model_dtype == "f32" else 2)
        self.ort = model_io is None
        if model_io is None:
            self.d_model_in = self._bufs.alloc(self.model_nbytes)
            self.d_mask = self._bufs.alloc(mw * mh * 4)
            dt = np.float32 if model_dtype == "f32" else np.float16
            self.model_input = cd.PinnedArray((1, 3, mh, mw), dt)
            self.mask = cd.PinnedArray((mh, mw), np.float32)
        else:
            self.d_model_in, self.d_mask = model_io

        # Refine.
        n_m = mw * mh
        self.d_luma = self._bufs.alloc(n_m)
        self.d_stack4 = self._bufs.alloc(4 * n_m * 4)  # guide, mask, guide², guide·mask
        self.d_tmp4 = self._bufs.alloc(4 * n_m * 4)
        self.d_means4 = self._bufs.alloc(4 * n_m * 4)
        self.d_ab = self._bufs.alloc(2 * n_m * 4)
        self.d_mab = self._bufs.alloc(2 * n_m * 4)
        self.d_prev = self._bufs.alloc(n_m * 4)
        self.d_matte = self._bufs.alloc(n_m * 4)
        self.d_first = self._bufs.alloc(4)
        self.d_alpha_y = self._bufs.alloc(n_y)
        self.d_alpha_uv = self._bufs.alloc(n_c)
        self._scratch: dict[Any, int] = {}

    # -- layout ------------------------------------------------------------------------------

    def _frame_view(self, flat: np.ndarray) -> FrameBuffer:
        w, h = self.width, self.height
        cw, ch = self.chroma
        n_y, n_c = w * h, cw * ch
        return FrameBuffer(
            flat[:n_y].reshape(h, w),
            flat[n_y : n_y + n_c].reshape(ch, cw),
            flat[n_y + n_c :].reshape(ch, cw),
            colorspace=self.colorspace,
            full_range=self.full_range,
        )

    def _ensure_levels(self, planes: list[PlaneLevels], k: int) -> None:
        """Float levels 1..k of ``planes`` (all of one size: U and V), each level's planes
        in one allocation, one after the other, so that one launch halves them all."""
        while len(planes[0].levels) < k:
            _, _, w, h, _ = planes[0].level(len(planes[0].levels))
            size = (w // 2) * (h // 2) * 4
            base = self._bufs.alloc(size * len(planes))
            for i, p in enumerate(planes):
                p.levels.append((base + i * size, w // 2, h // 2))

    def scratch(self, key: Any, nbytes: int) -> int:
        """A device buffer made once per key (per size and use)."""
        ptr = self._scratch.get(key)
        if ptr is None:
            ptr = self._scratch[key] = self._bufs.alloc(nbytes)
        return ptr

    def plane_offsets(self) -> tuple[int, int, int]:
        n_y, n_c = self.width * self.height, self.chroma[0] * self.chroma[1]
        return 0, n_y, n_y + n_c

    # -- the frame's sequence ------------------------------------------------------------------

    def _launch(self, name: str, grid: Any, block: Any, *args: Any, smem: int = 0) -> None:
        self.module.launch(name, grid, block, self.stream.handle, *args, smem=smem)

    def _kernel(
        self, label: str, nbytes: int, name: str, grid: Any, block: Any, *args: Any, smem: int = 0
    ) -> Op:
        """An op launching kernel ``name`` with ``args``, bound now."""
        return Op(label, nbytes, partial(self._launch, name, grid, block, *args, smem=smem))

    def _copy_h2d(self, dst: int, src: int, nbytes: int) -> None:
        cd.check(cu.cuMemcpyHtoDAsync(dst, src, nbytes, self.stream.handle), "cuMemcpyHtoDAsync")

    def _copy_d2h(self, dst: int, src: int, nbytes: int) -> None:
        cd.check(cu.cuMemcpyDtoHAsync(dst, src, nbytes, self.stream.handle), "cuMemcpyDtoHAsync")

    def _halve_ops(self, planes: list[PlaneLevels], k: int, tag: str) -> list[Op]:
        """Levels 1..k of ``planes`` (Y alone, or U and V together: one launch per level)."""
        self._ensure_levels(planes, k)
        ops = []
        z = len(planes)
        for level in range(1, k + 1):
            sp, ss, sw, sh, st = planes[0].level(level - 1)
            dp, _, dw, dh, _ = planes[0].level(level)
            src_plane = (planes[-1].level(level - 1)[0] - sp) // (1 if st == "u8" else 4)
            dst_plane = dw * dh
            nbytes = z * (sw * sh * (1 if st == "u8" else 4) + dw * dh * 4)
            ops.append(
                self._kernel(
                    f"halve {tag} → {dw}×{dh}",
                    nbytes,
                    f"lfx_halve_{st}",
                    grid2(dw, dh, z),
                    BLOCK_2D,
                    P(sp),
                    ss,
                    src_plane,
                    P(dp),
                    dw,
                    dh,
                    dst_plane,
                )
            )
        return ops

    def blur_plans(self, settings: ChainSettings) -> list[tuple[int, int]]:
        """(pyramid level, box radius) per plane: the cpu backend's ``blur_plan``."""
        from engine.effects.background import blur_plan

        plans = []
        for p in self.planes:
            levels = len(reference.pyramid_sizes(p.width, p.height, 5))
            plans.append(
                blur_plan(settings.blur_strength, p.width, p.height, levels, settings.blur_bias)
            )
        return plans

    def depths(self, settings: ChainSettings) -> tuple[int, int]:
        """How many halvings of Y and of U/V a frame needs: the model's, and the blur's level
        (worked out once per setting: this is asked every frame)."""
        found = self._depths.get(settings)
        if found is None:
            dy, duv = self.k_model[0], self.k_model[1]
            if settings.background == "blur":
                (ly, _), (lu, _), (lv, _) = self.blur_plans(settings)
                dy, duv = max(dy, ly), max(duv, lu, lv)
            found = self._depths[settings] = (dy, duv)
        return found

    def pre_ops(self, settings: ChainSettings) -> list[Op]:
        """Upload, halvings (as deep as ``settings`` need), preprocess with the luma guide (and
        the model input's download for ONNX Runtime)."""
        ops = [
            Op(
                "upload (host → device)",
                self.frame_bytes,
                lambda: self._copy_h2d(self.d_in, self.host_in.ptr, self.frame_bytes),
            )
        ]
        dy, duv = self.depths(settings)
        ops += self._halve_ops(self.planes[:1], dy, "Y")
        ops += self._halve_ops(self.planes[1:], duv, "U+V")
        mw, mh = self.mask_w, self.mask_h
        yp, ys, yw, yh, yt = self.planes[0].level(self.k_model[0])
        up, cs, cw, ch, ct = self.planes[1].level(self.k_model[1])
        vp, _, _, _, _ = self.planes[2].level(self.k_model[1])
        name = f"lfx_preprocess_{yt}{ct}_{self.model_dtype}"
        in_bytes = yw * yh * (1 if yt == "u8" else 4) + 2 * cw * ch * (1 if ct == "u8" else 4)
        ops.append(
            self._kernel(
                "preprocess + luma guide",
                in_bytes + self.model_nbytes + mw * mh,
                name,
                grid2(mw, mh),
                BLOCK_2D,
                P(yp),
                ys,
                yw,
                yh,
                P(up),
                P(vp),
                cs,
                cw,
                ch,
                self._cm,
                P(self.d_model_in),
                P(self.d_luma),
                mw,
                mh,
            )
        )
        if self.ort:
            ops.append(
                Op(
                    "model input (device → host)",
                    self.model_nbytes,
                    lambda: self._copy_d2h(
                        self.model_input.ptr, self.d_model_in, self.model_nbytes
                    ),
                )
            )
        return ops

    def _box_ops(
        self,
        src: int,
        tmp: int,
        w: int,
        h: int,
        r: int,
        planes: int,
        tag: str,
        dst: int | None = None,
    ) -> list[Op]:
        """One box mean (horizontal then vertical pass) of ``planes`` stacked w × h planes:
        src → tmp → dst (default: src)."""
        dst = src if dst is None else dst
        smem_h = (BOX_H_BLOCK + 2 * r) * 4
        bx, by, _ = BOX_V_BLOCK
        smem_v = (by + 2 * r) * bx * 4
        grid_h = ((w + BOX_H_BLOCK - 1) // BOX_H_BLOCK, h, planes)
        grid_v = ((w + bx - 1) // bx, (h + by - 1) // by, planes)
        nbytes = 2 * planes * w * h * 4
        return [
            self._kernel(
                f"box_h r{r} {tag}",
                nbytes,
                "lfx_box_h",
                grid_h,
                (BOX_H_BLOCK, 1, 1),
                P(src),
                P(tmp),
                w,
                h,
                r,
                smem=smem_h,
            ),
            self._kernel(
                f"box_v r{r} {tag}",
                nbytes,
                "lfx_box_v",
                grid_v,
                BOX_V_BLOCK,
                P(tmp),
                P(dst),
                w,
                h,
                r,
                smem=smem_v,
            ),
        ]

    def _resample_matte(self, w: int, h: int) -> tuple[list[Op], tuple[int, int, int, int]]:
        """The low-resolution matte's halvings towards w × h (ptr, stride, width, height)."""
        mw, mh = self.mask_w, self.mask_h
        k = reference.halvings(mw, mh, w, h)
        ops: list[Op] = []
        src, sw, sh = self.d_matte, mw, mh
        for i in range(k):
            dw, dh = sw // 2, sh // 2
            dst = self.scratch(("matte", i), dw * dh * 4)

            ops.append(
                self._kernel(
                    f"halve matte → {dw}×{dh}",
                    (sw * sh + dw * dh) * 4,
                    "lfx_halve_f32",
                    grid2(dw, dh),
                    BLOCK_2D,
                    P(src),
                    sw,
                    0,
                    P(dst),
                    dw,
                    dh,
                    0,
                )
            )
            src, sw, sh = dst, dw, dh
        return ops, (src, sw, sw, sh)

    def post_ops(self, s: ChainSettings) -> list[Op]:
        mw, mh = self.mask_w, self.mask_h
        n_m = mw * mh
        f4 = n_m * 4
        ops: list[Op] = []
        if self.ort:
            ops.append(
                Op(
                    "mask (host → device)",
                    f4,
                    lambda: self._copy_h2d(self.d_mask, self.mask.ptr, f4),
                )
            )
        # Temporal smoothing and the ramp: history, matte, count, first-frame flag, settings.
        smooth = (
            P(self.d_prev),
            P(self.d_matte),
            n_m,
            P(self.d_first),
            float(s.smoothing),
            float(s.threshold),
            float(s.feather),
        )
        if s.guided:
            ops.append(
                self._kernel(
                    "guided: products",
                    n_m + f4 + 4 * f4,
                    "lfx_guided_products",
                    grid2(mw, mh),
                    BLOCK_2D,
                    P(self.d_luma),
                    mw,
                    P(self.d_mask),
                    P(self.d_stack4),
                    mw,
                    mh,
                )
            )
            ops += self._box_ops(
                self.d_stack4, self.d_tmp4, mw, mh, s.radius, 4, "guided ×4", dst=self.d_means4
            )
            m4 = self.d_means4
            ops.append(
                self._kernel(
                    "guided: fit a, b",
                    4 * f4 + 2 * f4,
                    "lfx_guided_ab",
                    grid1(n_m),
                    (BLOCK_1D, 1, 1),
                    P(m4),
                    P(m4 + f4),
                    P(m4 + 2 * f4),
                    P(m4 + 3 * f4),
                    P(self.d_ab),
                    P(self.d_ab + f4),
                    n_m,
                    float(s.eps),
                )
            )
            ops += self._box_ops(
                self.d_ab, self.d_tmp4, mw, mh, s.radius, 2, "guided ×2", dst=self.d_mab
            )
            ops.append(
                self._kernel(
                    "guided: output + smooth + ramp",
                    3 * f4 + 2 * f4 + f4,
                    "lfx_guided_smooth_ramp",
                    grid1(n_m),
                    (BLOCK_1D, 1, 1),
                    P(self.d_mab),
                    P(self.d_mab + f4),
                    P(self.d_stack4),
                    *smooth,
                )
            )
        else:
            ops.append(
                self._kernel(
                    "smooth + ramp",
                    f4 + 2 * f4 + f4,
                    "lfx_smooth_ramp",
                    grid1(n_m),
                    (BLOCK_1D, 1, 1),
                    P(self.d_mask),
                    *smooth,
                )
            )
        w, h = self.width, self.height
        cw, ch = self.chroma
        o = self.plane_offsets()
        n_y, n_c = w * h, cw * ch
        if s.background == "blur":
            blur_ops, ((py, yw, yh), (pu, lcw, lch), (pv, _, _)) = self._blur_ops(s)
            ops += blur_ops
            bg = Background(2, 0, 0, 0, P(py), P(pu), P(pv), yw, yh, lcw, lch)
            bg_bytes = yw * yh + 2 * lcw * lch
        elif s.background in ("image", "frame"):
            if s.background == "image" and self._still is None:
                raise BackendError("no background image uploaded (set_background_image)")
            src = self._still if s.background == "image" else self.d_in
            assert src is not None
            bg = Background(1, 0, 0, 0, P(src), P(src + o[1]), P(src + o[2]))
            bg_bytes = self.frame_bytes
        elif s.background == "colour":
            bg = Background(0, *(int(c) for c in s.colour))
            bg_bytes = 0
        else:
            raise BackendError(f"unknown background {s.background!r}")
        fin, out = self.d_in, self.d_out
        ops.append(
            self._kernel(
                f"mattes + background + composite ({s.background})",
                f4 + 2 * self.frame_bytes + n_y + n_c + bg_bytes,
                "lfx_finish",
                grid2((w + PX - 1) // PX, h),
                BLOCK_2D,
                P(fin),
                w,
                P(fin + o[1]),
                P(fin + o[2]),
                cw,
                P(self.d_matte),
                mw,
                mh,
                P(self.d_alpha_y),
                P(self.d_alpha_uv),
                P(out),
                P(out + o[1]),
                P(out + o[2]),
                w,
                h,
                cw,
                ch,
                bg,
            )
        )
        total = self.frame_bytes
        ops.append(
            Op(
                "download (device → host)",
                total,
                lambda: self._copy_d2h(self.host_out.ptr, self.d_out, total),
            )
        )
        return ops

    def _blur_ops(self, s: ChainSettings) -> tuple[list[Op], list[tuple[int, int, int]]]:
        """The masked blur of each plane at its pyramid level, as uint8 levels that the last
        kernel (lfx_finish) upsamples on the fly; with the ops, each plane's level (pointer,
        width, height).

        Planes whose levels have the same size, type and radius are blurred together: one
        launch writes x·share of each and the share, stacked; each box pass is one launch over
        the stack; one launch takes their ratios."""
        plans = self.blur_plans(s)
        groups: dict[tuple[int, int, int, str], list[int]] = {}
        for i, (level, radius) in enumerate(plans):
            _, _, lw, lh, lt = self.planes[i].level(level)
            groups.setdefault((lw, lh, radius, lt), []).append(i)
        levels: list[tuple[int, int, int]] = [(0, 0, 0)] * 3
        ops: list[Op] = []
        for (lw, lh, r, lt), members in groups.items():
            n = len(members) + 1
            plane_bytes = lw * lh * 4
            x_bytes = lw * lh * (1 if lt == "u8" else 4)
            stack = self.scratch(("stack", lw, lh, n), n * plane_bytes)
            tmp = self.scratch(("stack tmp", lw, lh, n), n * plane_bytes)
            matte_ops, (mp, ms, msw, msh) = self._resample_matte(lw, lh)
            ops += matte_ops
            xs = [self.planes[i].level(plans[i][0]) for i in members]
            xargs: list[Any] = []
            for m in range(3):
                xp, xstride = xs[min(m, len(xs) - 1)][:2]
                xargs += [P(xp), xstride]
            tag = "+".join("YUV"[i] for i in members)

            ops.append(
                self._kernel(
                    f"blur: inputs {tag} {lw}×{lh}",
                    msw * msh * 4 + len(members) * x_bytes + n * plane_bytes,
                    f"lfx_blur_inputs_{lt}",
                    grid2(lw, lh),
                    BLOCK_2D,
                    P(mp),
                    ms,
                    msw,
                    msh,
                    *xargs,
                    len(members),
                    P(stack),
                    lw,
                    lh,
                )
            )
            box_tag = f"blur ×{n} {lw}×{lh}"
            ops += self._box_ops(stack, tmp, lw, lh, r, n, box_tag)
            ops += self._box_ops(stack, tmp, lw, lh, r, n, box_tag)
            small = self.scratch(("blur small", lw, lh, len(members)), len(members) * lw * lh)

            ops.append(
                self._kernel(
                    f"blur: ratio {tag}",
                    n * plane_bytes + len(members) * (x_bytes + lw * lh),
                    f"lfx_blur_ratio_{lt}",
                    grid2(lw, lh),
                    BLOCK_2D,
                    P(stack),
                    *xargs,
                    len(members),
                    P(small),
                    lw,
                    lh,
                )
            )
            for slot, i in enumerate(members):
                levels[i] = (small + slot * lw * lh, lw, lh)
        if levels[1][1:] != levels[2][1:]:
            raise BackendError("U and V blurred at different levels")  # same plane size: never
        return ops, levels

    # -- graphs and the per-frame calls --------------------------------------------------------

    def capture(self, ops: list[Op]) -> Any:
        """The ops as one instantiated CUDA graph (launched with ``cuGraphLaunch``)."""
        mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        cd.check(cu.cuStreamBeginCapture(self.stream.handle, mode), "cuStreamBeginCapture")
        try:
            for op in ops:
                op.run()
        except BaseException:
            status, graph = cu.cuStreamEndCapture(self.stream.handle)  # leave capture mode
            if status == cu.CUresult.CUDA_SUCCESS:
                cu.cuGraphDestroy(graph)
            raise
        graph = cd.check(cu.cuStreamEndCapture(self.stream.handle), "cuStreamEndCapture")
        try:
            return cd.check(cu.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
        finally:
            cd.check(cu.cuGraphDestroy(graph), "cuGraphDestroy")

    def set_background_image(self, still: FrameBuffer) -> None:
        """A still background (already at the frame's size and conventions), uploaded once."""
        if still.size != (self.width, self.height):
            raise BackendError(f"background is {still.size}, frame is {self.width}×{self.height}")
        if self._still is None:
            self._still = self._bufs.alloc(self.frame_bytes)
        packed = np.concatenate([still.y.ravel(), still.u.ravel(), still.v.ravel()])
        cd.check(cu.cuMemcpyHtoD(self._still, packed.ctypes.data, packed.nbytes), "cuMemcpyHtoD")

    def reset(self) -> None:
        """Forget the temporal state: the next frame's matte is not smoothed against the last."""
        self._first = True

    def _launch_graph(self, key: Any, ops: Callable[[], list[Op]], what: str) -> None:
        """Launch the graph cached under ``key``, captured from ``ops()`` the first time."""
        exe = self._graphs.get(key)
        if exe is None:
            if len(self._graphs) >= self.MAX_GRAPHS:
                self._destroy_graphs()
            exe = self._graphs[key] = self.capture(ops())
        cd.check(cu.cuGraphLaunch(exe, self.stream.handle), f"cuGraphLaunch ({what})")

    def launch_pre(self, settings: ChainSettings) -> None:
        """The upload and everything before the model, as one graph per pyramid depth."""
        key = ("pre", self.depths(settings))
        self._launch_graph(key, partial(self.pre_ops, settings), "pre")

    def launch_post(self, settings: ChainSettings) -> None:
        """Everything after the model, as one graph per setting."""
        if self._first_set != self._first:
            flag = 1 if self._first else 0
            cd.check(
                cu.cuMemsetD32Async(self.d_first, flag, 1, self.stream.handle), "cuMemsetD32Async"
            )
            self._first_set = self._first
        self._launch_graph(settings, partial(self.post_ops, settings), "post")
        self._first = False

    def synchronize(self) -> None:
        self.stream.synchronize()

    def download_alpha(self) -> np.ndarray:
        """The last frame's Y-size matte (a synchronous copy, for tests and tools)."""
        out = np.empty((self.height, self.width), np.uint8)
        self.synchronize()
        cd.check(cu.cuMemcpyDtoH(out.ctypes.data, self.d_alpha_y, out.nbytes), "cuMemcpyDtoH")
        return out

    def _destroy_graphs(self) -> None:
        for exe in self._graphs.values():
            cu.cuGraphExecDestroy(exe)
        self._graphs.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.gpu.device.make_current()
        self.synchronize()
        self._destroy_graphs()
        self._bufs.close()
        self.host_in.close()
        self.host_out.close()
        if self.ort:
            self.model_input.close()
            self.mask.close()
