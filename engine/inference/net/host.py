"""A plan run by the host build of the kernels' math (kernels/net_host.cpp, through ctypes).

Not a runtime for users (one core, no vector units asked for): it exists so that every shipped
model's run through LiveFX's kernels can be compared with ONNX Runtime where there is no GPU.
It runs the very ``Step`` structs and arena offsets the GPU executor launches, so a wrong
offset, a wrong field or a wrong fusion shows here too. The library is ``build/liblfx_host.so``
(``make build/liblfx_host.so``).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from engine.errors import BackendError
from engine.inference.net.plan import NetPtrs, NetStep, Plan

ROOT = Path(__file__).resolve().parents[3]
LIB = ROOT / "build" / "liblfx_host.so"


def library(path: Path = LIB) -> ctypes.CDLL:
    if not path.exists():
        raise BackendError(f"the kernels' host build is not there: make {path.relative_to(ROOT)}")
    lib = ctypes.CDLL(str(path))
    for name in ("lfx_net_step", "lfx_net_step_f16w"):
        getattr(lib, name).argtypes = [ctypes.POINTER(NetStep), ctypes.POINTER(NetPtrs)]
        getattr(lib, name).restype = ctypes.c_int
    for name in ("lfx_net_sizeof_step", "lfx_net_sizeof_ptrs"):
        getattr(lib, name).restype = ctypes.c_int
    if lib.lfx_net_sizeof_step() != ctypes.sizeof(NetStep):
        raise BackendError("engine/inference/net/plan.py's NetStep does not match kernels/net.cuh")
    if lib.lfx_net_sizeof_ptrs() != ctypes.sizeof(NetPtrs):
        raise BackendError("engine/inference/net/plan.py's NetPtrs does not match kernels/net.cuh")
    return lib


class HostNet:
    """Runs ``plan`` on the CPU; ``poison`` fills the arena first (an element no step writes
    then shows in the output)."""

    def __init__(self, plan: Plan, lib: ctypes.CDLL | None = None) -> None:
        self.plan = plan
        self.lib = lib or library()
        self.arena = np.zeros(max(plan.arena_floats, 1), np.float32)
        self.weights = np.ascontiguousarray(plan.w16.view(np.float16).astype(np.float32))
        self.consts = np.ascontiguousarray(plan.f32)
        self.structs = [st.struct() for st in plan.steps]

    def view(self, name: str) -> np.ndarray:
        off, size = self.plan.offset(name), self.plan.size(name)
        return self.arena[off : off + size].reshape(self.plan.shapes[name])

    def run(self, x: np.ndarray, *, poison: float | None = None) -> dict[str, np.ndarray]:
        plan = self.plan
        if tuple(x.shape) != plan.input_shape:
            raise BackendError(f"{plan.name}: input {x.shape}, planned for {plan.input_shape}")
        if poison is not None:
            self.arena[:] = poison
        self.view(plan.input)[...] = x
        base = self.arena.ctypes.data

        def addr(name: str | None) -> int | None:
            return None if name is None else base + 4 * plan.offset(name)

        for st, s in zip(plan.steps, self.structs, strict=True):
            ptrs = NetPtrs(
                addr(st.x),
                addr(st.r),
                addr(st.s),
                self.weights.ctypes.data,
                self.consts.ctypes.data,
                addr(st.y),
            )
            if self.lib.lfx_net_step(ctypes.byref(s), ctypes.byref(ptrs)) != 0:
                raise BackendError(f"{plan.name}: the host build does not know step {st.kernel}")
        return {name: self.view(name).copy() for name in plan.outputs}
