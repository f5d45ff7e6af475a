"""``FrameChain``: every device buffer and launch of one session at one resolution.

One chain per session and resolution holds every device buffer and two pinned host buffers,
allocated once; a frame goes to the GPU in one host-to-device copy of its packed yuv420p planes
and comes back in one device-to-host copy of the output planes. Between the copies every stage
is one of our kernels, launched on the session's stream:

    pre  (one CUDA graph per pyramid depth, ``engine.gpu.pre``): upload → halvings (Y; U and V
         together) as far as the model and the blur need → preprocess (planes → NCHW RGB in
         [0, 1], fp32 or fp16, and the luma guide at the mask's size, one launch) [→ model input
         to the host, when the model runs on ONNX Runtime]
    model: LiveFX's net kernels (``engine.gpu.net``) inside the same graph (``launch_frame``:
         the whole frame is one graph, no host round trip); TensorRT on the same stream between
         the two graphs; or ONNX Runtime on the CPU between them
    post (one CUDA graph per setting, ``engine.gpu.composite``): [mask to the device] → guided
         filter (``engine.gpu.refine``: its four box means in one launch pair, a and b's in
         another; its output fused with temporal smoothing and the ramp) → for the blur
         (``engine.gpu.blur``): at its pyramid level, x·share of every plane and the share (one
         launch), both box passes over them (one launch each), the ratios (one launch) → one
         last launch: both uint8 mattes, the background (the blurred levels upsampled, a still
         image uploaded once, or a colour) and the composite of Y, U and V → download

Each stage follows ``engine.ops.reference`` (the tests hold it to it); the matte and blur
algorithm is the cpu backend's (``engine.ops.cpu``), with float pyramid levels where the cpu
rounds each level to uint8.

A stage is a list of ``Op``: ``FrameChain._kernel`` binds a launch of one kernel, ``Op(name,
nbytes, run)`` any other call on the chain's stream; ``capture`` records a list as one graph.

Imports cuda-python: import it only where the GPU path is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from engine.errors import BackendError
from engine.frame import FrameBuffer, chroma_size
from engine.gpu import blur, composite, frame, memory, pre
from engine.gpu import driver as cd
from engine.gpu.launch import Op, color_matrix
from engine.gpu.memory import Buffers
from engine.gpu.module import Gpu
from engine.ops import reference

cu = cd.cu

__all__ = ["ChainSettings", "FrameChain", "Op", "PlaneLevels"]


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
    # blur | image | colour | frame (the frame itself: no blur) | matte (the mask effect) |
    # none (upload, download) | gan (the styled frame) | gan_person (styled over the frame)
    background: str
    blur_strength: float = 0.0
    blur_bias: int = 0
    colour: tuple[int, int, int] = (0, 128, 128)  # Y, U, V code values
    gan: tuple[int, int, float, float] | None = None  # the generator's w, h; eps, noise_eps


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
        gate: int | None = None,
    ) -> None:
        if model_dtype not in ("f32", "f16"):
            raise BackendError(f"model input type {model_dtype!r} is not f32 or f16")
        self.gpu, self.module, self.stream = gpu, gpu.module, stream
        gpu.device.make_current()
        self.width, self.height = width, height
        self.colorspace, self.full_range = colorspace, full_range
        self.chroma = chroma_size(width, height)
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
        self._video: cd.PinnedArray | None = None  # a video background's frame, host side
        self._closed = False
        # The GAN effect's generator per size (engine.gpu.net.DeviceNet), set by the pipeline.
        self.generators: dict[tuple[int, int], Any] = {}
        self._alloc_frame()
        self._alloc_model_io(model_io)
        self._alloc_refine()
        self.gate = gate
        if gate is not None:  # the frame's gate (static frame, scene cut) on the device
            self.d_last_luma = self._bufs.alloc(self.mask_w * self.mask_h)
            self.d_flags = self._bufs.alloc(16)
            self.flags = cd.PinnedArray((4,), np.int32)  # has a mask, infer_every, skip_static
            self.gate_result = cd.PinnedArray((4,), np.int32)  # run, scene cut, change (f32)

    def _alloc_frame(self) -> None:
        """The pinned and device frames, and the planes' pyramid levels: as many as the model's
        resample and the deepest blur need."""
        width, height = self.width, self.height
        cw, ch = self.chroma
        n_y, n_c = width * height, cw * ch
        self.frame_bytes = n_y + 2 * n_c
        self.host_in = cd.PinnedArray((self.frame_bytes,), np.uint8)
        self.host_out = cd.PinnedArray((self.frame_bytes,), np.uint8)
        self.d_in = self._bufs.alloc(self.frame_bytes)
        self.d_out = self._bufs.alloc(self.frame_bytes)
        self.in_frame = self._frame_view(self.host_in.array)
        self.out_frame = self._frame_view(self.host_out.array)
        self.planes = [
            PlaneLevels(self.d_in, width, height),
            PlaneLevels(self.d_in + n_y, cw, ch),
            PlaneLevels(self.d_in + n_y + n_c, cw, ch),
        ]
        mw, mh = self.mask_w, self.mask_h
        self.k_model = [reference.halvings(p.width, p.height, mw, mh) for p in self.planes]

    def _alloc_model_io(self, model_io: tuple[int, int] | None) -> None:
        """The model's input and output: TensorRT's (``model_io``), or the chain's own with
        pinned host copies for ONNX Runtime."""
        mw, mh = self.mask_w, self.mask_h
        m_elems = 3 * mw * mh
        self.model_nbytes = m_elems * (4 if self.model_dtype == "f32" else 2)
        self.ort = model_io is None
        if model_io is None:
            self.d_model_in = self._bufs.alloc(self.model_nbytes)
            self.d_mask = self._bufs.alloc(mw * mh * 4)
            dt = np.float32 if self.model_dtype == "f32" else np.float16
            self.model_input = cd.PinnedArray((1, 3, mh, mw), dt)
            self.mask = cd.PinnedArray((mh, mw), np.float32)
        else:
            self.d_model_in, self.d_mask = model_io

    def _alloc_refine(self) -> None:
        """The matte's buffers at the mask's size, and the two frame-size mattes."""
        n_m = self.mask_w * self.mask_h
        n_y, n_c = self.width * self.height, self.chroma[0] * self.chroma[1]
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

    def blur_plans(self, settings: ChainSettings) -> list[tuple[int, int]]:
        """(pyramid level, box radius) per plane: the cpu backend's ``blur_plan``."""
        return blur.blur_plans(self, settings)

    def depths(self, settings: ChainSettings) -> tuple[int, int]:
        """How many halvings of Y and of U/V a frame needs (``engine.gpu.pre.depths``)."""
        return pre.depths(self, settings)

    def pre_ops(self, settings: ChainSettings) -> list[Op]:
        """Everything before the model (``engine.gpu.pre.pre_ops``)."""
        return pre.pre_ops(self, settings)

    def post_ops(self, s: ChainSettings) -> list[Op]:
        """Everything after the model (``engine.gpu.composite.post_ops``)."""
        return composite.post_ops(self, s)

    # -- graphs and the per-frame calls --------------------------------------------------------

    def capture(self, ops: list[Op]) -> Any:
        """The ops as one instantiated CUDA graph (launched with ``cuGraphLaunch``)."""
        return memory.capture(self.stream, ops)

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
        memory.launch_graph(exe, self.stream, what)

    def launch_pre(self, settings: ChainSettings) -> None:
        """The upload and everything before the model, as one graph per pyramid depth."""
        key = ("pre", self.depths(settings))
        self._launch_graph(key, partial(self.pre_ops, settings), "pre")

    def _set_first(self) -> None:
        """The device's "no history yet" flag, read by the smoothing inside the graphs."""
        if self._first_set != self._first:
            flag = 1 if self._first else 0
            cd.check(
                cu.cuMemsetD32Async(self.d_first, flag, 1, self.stream.handle), "cuMemsetD32Async"
            )
            self._first_set = self._first

    def launch_post(self, settings: ChainSettings) -> None:
        """Everything after the model, as one graph per setting."""
        self._set_first()
        self._launch_graph(settings, partial(self.post_ops, settings), "post")
        self._first = False

    def frame_ops(self, settings: ChainSettings, model: Callable[[], list[Op]] | None) -> list[Op]:
        """The whole frame's ops (``engine.gpu.frame.frame_ops``)."""
        return frame.frame_ops(self, settings, model)

    def gate_decision(self) -> tuple[bool, bool, float]:
        """After the frame: (the model ran, a scene cut, the luma's change)."""
        return frame.gate_decision(self)

    def launch_frame(self, settings: ChainSettings, model: Callable[[], list[Op]] | None) -> None:
        """``frame_ops`` as one CUDA graph (one per setting, pyramid depth, and with or
        without the model), launched on the session's stream; no host round trip inside."""
        self._set_first()
        key = ("frame", settings, self.depths(settings), model is not None)
        self._launch_graph(key, partial(self.frame_ops, settings, model), "frame")
        self._first = False

    def video_background(self) -> FrameBuffer:
        """A background that changes every frame (a video): a pinned frame the caller fills
        before each launch; the frame's graph uploads it (``pre_ops``, background "video")."""
        if self._video is None:
            self._video = cd.PinnedArray((self.frame_bytes,), np.uint8)
            self._still = self._bufs.alloc(self.frame_bytes)
        return self._frame_view(self._video.array)

    def white_frame(self) -> int:
        """A constant frame of full white (Y 255, or 235 in limited range; U, V 128): the
        ``mask`` effect composites it over black with the matte, which is the grey matte."""
        ptr = self._scratch.get("white")
        if ptr is None:
            ptr = self.scratch("white", self.frame_bytes)
            n_y = self.width * self.height
            y = 255 if self.full_range else 235
            cd.check(cu.cuMemsetD8(ptr, y, n_y), "cuMemsetD8")
            cd.check(cu.cuMemsetD8(ptr + n_y, 128, self.frame_bytes - n_y), "cuMemsetD8")
        return ptr

    def synchronize(self) -> None:
        self.stream.synchronize()

    def download_alpha(self) -> np.ndarray:
        """The last frame's Y-size matte (a synchronous copy, for tests and tools)."""
        out = np.empty((self.height, self.width), np.uint8)
        self.synchronize()
        cd.check(cu.cuMemcpyDtoH(out.ctypes.data, self.d_alpha_y, out.nbytes), "cuMemcpyDtoH")
        return out

    def _destroy_graphs(self) -> None:
        memory.destroy_graphs(self._graphs)

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
        if self._video is not None:
            self._video.close()
        if self.gate is not None:
            self.flags.close()
            self.gate_result.close()
        if self.ort:
            self.model_input.close()
            self.mask.close()
