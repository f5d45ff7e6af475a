"""A planned model on the GPU: LiveFX's net kernels (kernels/net_kernels.cuh) launched from an
``engine.inference.net.Plan``.

The weights (fp16) and constants (fp32) of a model go to the device once per process and are
shared by every shape and session that runs it (``DeviceWeights``); each ``DeviceNet`` (one
model at one input shape, batch included) has its own arena. ``ops(stream)`` gives one ``Op``
per step for a frame's CUDA graph: the launches are the host build's steps (the same structs,
the same offsets, ``engine/inference/net/host.py``), with device addresses.
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any, ClassVar

import numpy as np

from engine.gpu import driver as cd
from engine.gpu.launch import Op
from engine.gpu.module import Gpu
from engine.inference.net.plan import NetPtrs, Plan, Step

cu = cd.cu


class DeviceWeights:
    """A model's constant blobs on the device, uploaded once."""

    _cache: ClassVar[dict[tuple[int, str], DeviceWeights]] = {}

    def __init__(self, w16: np.ndarray, f32: np.ndarray) -> None:
        self.w = cd.DeviceBuffer(w16.nbytes)
        self.f = cd.DeviceBuffer(f32.nbytes)
        for buf, arr in ((self.w, w16), (self.f, f32)):
            a = np.ascontiguousarray(arr)
            cd.check(cu.cuMemcpyHtoD(buf.handle, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")

    @classmethod
    def of(cls, gpu: Gpu, plan: Plan) -> DeviceWeights:
        key = (id(gpu), hashlib.sha256(plan.w16.tobytes() + plan.f32.tobytes()).hexdigest())
        found = cls._cache.get(key)
        if found is None:
            gpu.device.make_current()
            found = cls._cache[key] = cls(plan.w16, plan.f32)
        return found


def step_bytes(plan: Plan, st: Step) -> int:
    """The least a step moves: its tensors read once, its output written once, its weights."""
    n = plan.size(st.x) + plan.size(st.y)
    n += plan.size(st.r) if st.r else 0
    n += plan.size(st.s) if st.s else 0
    return 4 * n + 2 * max(0, st.macs // max(1, plan.batch * _spatial(plan, st)))


def _spatial(plan: Plan, st: Step) -> int:
    shape = plan.shapes[st.y]
    return int(np.prod(shape[2:])) if len(shape) == 4 else 1


class DeviceNet:
    """``plan`` on ``gpu``: its arena, and its launches with device addresses.

    ``ptr(name)`` is a tensor's device address: the frame chain's preprocess writes the model
    input there and its refine stage reads the mask from there."""

    def __init__(self, gpu: Gpu, plan: Plan, *, gate: int | None = None) -> None:
        self.gpu, self.plan, self.module = gpu, plan, gpu.module
        gpu.device.make_current()
        self.weights = DeviceWeights.of(gpu, plan)
        self.arena = cd.DeviceBuffer(max(4, plan.arena_floats * 4))
        self.launches: list[tuple[Step, Any, NetPtrs]] = []
        for st in plan.steps:
            ptrs = NetPtrs(
                self.ptr(st.x),
                self.ptr(st.r) if st.r else None,
                self.ptr(st.s) if st.s else None,
                self.weights.w.ptr,
                self.weights.f.ptr,
                self.ptr(st.y),
                gate,
            )
            self.launches.append((st, st.struct(), ptrs))

    def ptr(self, name: str) -> int:
        return self.arena.ptr + 4 * self.plan.offset(name)

    def ops(self, stream: cd.Stream) -> list[Op]:
        out = []
        for st, struct, ptrs in self.launches:
            grid, block = st.grid(self.plan.batch)
            run = partial(self.module.launch, st.kernel, grid, block, stream.handle, struct, ptrs)
            out.append(Op(f"{self.plan.name}: {st.what}", step_bytes(self.plan, st), run))
        return out

    def run(self, x: np.ndarray, stream: cd.Stream) -> dict[str, np.ndarray]:
        """Upload ``x``, run every step, download the outputs (synchronous; tests and tools)."""
        a = np.ascontiguousarray(x, np.float32)
        if a.shape != self.plan.input_shape:
            raise ValueError(f"input {a.shape}, planned for {self.plan.input_shape}")
        cd.check(
            cu.cuMemcpyHtoD(self.ptr(self.plan.input), a.ctypes.data, a.nbytes), "cuMemcpyHtoD"
        )
        for op in self.ops(stream):
            op.run()
        stream.synchronize()
        outs = {}
        for name in self.plan.outputs:
            o = np.empty(self.plan.shapes[name], np.float32)
            cd.check(cu.cuMemcpyDtoH(o.ctypes.data, self.ptr(name), o.nbytes), "cuMemcpyDtoH")
            outs[name] = o
        return outs

    def poison(self, byte: int) -> None:
        """Fill the arena with ``byte`` (0xFF: NaN), so that an element no step writes shows."""
        cd.check(cu.cuMemsetD8(self.arena.handle, byte, self.arena.nbytes), "cuMemsetD8")

    def close(self) -> None:
        self.arena.close()


class GpuSegmenter:
    """A segmenter on the net kernels, for the cuda pipeline: its input and output live on the
    device (``d_input``, written by the chain's preprocess; ``d_output``, read by its refine)
    and ``ops(stream)`` are its launches inside the frame's graph. ``run()`` (the
    ``InferenceBackend`` call, for tools) uploads ``input``, runs, downloads ``output``."""

    name = "kernels"

    def __init__(self, gpu: Gpu, model: bytes, label: str, shape: tuple[int, ...]) -> None:
        from engine.errors import ModelError
        from engine.inference.net import load_net

        self.plan = load_net(model, label).plan(shape)
        out = self.plan.outputs[0]
        n, _, h, w = shape
        if self.plan.shapes[out] != (n, 1, h, w):
            raise ModelError(f"{label}: mask {self.plan.shapes[out]} is not the input's size")
        # The frame's gate (engine.gpu.chain: static frame, scene cut) says whether it runs.
        self.gate = cd.DeviceBuffer(16)
        cd.check(cu.cuMemsetD8(self.gate.handle, 0, 16), "cuMemsetD8")
        self.net = DeviceNet(gpu, self.plan, gate=self.gate.ptr)
        self.stream = cd.Stream()
        self.d_input, self.d_output = self.net.ptr(self.plan.input), self.net.ptr(out)
        self.input = np.zeros(shape, np.float32)
        self.output = np.zeros(self.plan.shapes[out], np.float32)

    def ops(self, stream: cd.Stream) -> list[Op]:
        return self.net.ops(stream)

    def run(self) -> np.ndarray:
        one = np.ones(1, np.int32)  # open the gate: run
        cd.check(cu.cuMemcpyHtoD(self.gate.handle, one.ctypes.data, 4), "cuMemcpyHtoD")
        np.copyto(self.output, self.net.run(self.input, self.stream)[self.plan.outputs[0]])
        return self.output

    def close(self) -> None:
        self.net.close()
        self.gate.close()
        self.stream.close()
