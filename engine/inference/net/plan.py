"""A model planned for the kernels: its steps, its constant blobs and its buffers.

``Plan`` is what both executors run, the host build (``host.py``, the tests' proof) and the GPU
(``engine/gpu/net.py``): the same steps, the same ``Step`` structs, the same arena offsets; only
the base addresses differ. ``NetStep`` and ``NetPtrs`` mirror ``lfx::net::Step`` and
``lfx::net::Ptrs`` of kernels/net.cuh field for field (the host tests check the sizes).

Buffers: every tensor a step writes lives in one fp32 arena; tensors whose lives do not overlap
share space (first fit, in step order). The input and the outputs have places of their own that
nothing else uses, so a caller may write the input before the steps and read the outputs after.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# kernels/net.cuh: Kind
K_CONV, K_CONVT, K_POOL, K_GAP, K_SE, K_ELTWISE, K_RESIZE, K_D2S, K_PAD, K_CONCAT = range(1, 11)
KERNELS = {
    K_CONV: "lfx_net_conv",
    K_CONVT: "lfx_net_convt",
    K_POOL: "lfx_net_pool",
    K_GAP: "lfx_net_gap",
    K_SE: "lfx_net_se",
    K_ELTWISE: "lfx_net_eltwise",
    K_RESIZE: "lfx_net_resize",
    K_D2S: "lfx_net_d2s",
    K_PAD: "lfx_net_pad",
    K_CONCAT: "lfx_net_concat",
}
# ActKind
A_NONE, A_RELU, A_CLIP, A_HARDSWISH, A_SIGMOID, A_HARDSIGMOID, A_LEAKY, A_TANH = range(8)
# PadMode, EltOp, EltB, CoordMode, NearestMode
P_ZERO, P_EDGE, P_REFLECT = range(3)
E_ADD, E_MUL, E_SUB, E_DIV, E_RSUB, E_RDIV = range(6)
B_NONE, B_FULL, B_NC, B_CONST_C, B_CONST_1 = range(5)
COORD_MODES = {"half_pixel": 0, "asymmetric": 1, "align_corners": 2, "pytorch_half_pixel": 3}
NEAREST_MODES = {"round_prefer_floor": 0, "round_prefer_ceil": 1, "floor": 2, "ceil": 3}

BLOCK = 256  # LFX_NET_BLOCK
GAP_PARTS = 256  # LFX_GAP_PARTS


class Act(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("lo", ctypes.c_float), ("hi", ctypes.c_float)]


class NetStep(ctypes.Structure):
    _fields_ = [  # type: ignore[assignment]
        (name, ctypes.c_int)
        for name in (
            "kind",
            "n",
            "ci",
            "hi",
            "wi",
            "co",
            "ho",
            "wo",
            "kh",
            "kw",
            "sh",
            "sw",
            "pt",
            "pl",
            "dh",
            "dw",
            "group",
            "mode",
            "mode2",
            "mode3",
        )
    ] + [
        ("fy", ctypes.c_float),
        ("fx", ctypes.c_float),
        ("w_off", ctypes.c_int),
        ("b_off", ctypes.c_int),
        ("w2_off", ctypes.c_int),
        ("cmid", ctypes.c_int),
        ("act1", Act),
        ("act2", Act),
    ]


class NetPtrs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("x", "r", "s", "w", "f", "y", "gate")]


@dataclass
class Step:
    """One launch: the struct's fields, and which tensors its pointers name."""

    kind: int
    fields: dict[str, Any]
    x: str
    y: str
    r: str | None = None
    s: str | None = None
    what: str = ""  # the ONNX nodes it runs, for logs and the benchmark
    macs: int = 0  # multiply-adds per batch

    @property
    def kernel(self) -> str:
        return KERNELS[self.kind]

    def struct(self) -> NetStep:
        st = NetStep()
        st.w_off = st.b_off = st.w2_off = -1
        st.group = st.kh = st.kw = st.sh = st.sw = st.dh = st.dw = 1
        for k, v in self.fields.items():
            if k in ("act1", "act2"):
                assert isinstance(v, tuple)
                setattr(st, k, Act(*v))
            else:
                setattr(st, k, v)
        st.kind = self.kind
        return st

    def grid(self, batch: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        f = self.fields
        if self.kind == K_GAP:
            return (int(f["ci"]), 1, batch), (GAP_PARTS, 1, 1)
        if self.kind == K_CONCAT:
            per = int(f["ci"]) * int(f["hi"]) * int(f["wi"])
        else:
            per = int(f["co"]) * int(f["ho"]) * int(f["wo"])
        return (-(-per // BLOCK), 1, batch), (BLOCK, 1, 1)


@dataclass
class Plan:
    """A model at one input shape: steps in order, constants, and where each tensor lives."""

    name: str
    input: str
    input_shape: tuple[int, ...]
    outputs: list[str]
    shapes: dict[str, tuple[int, ...]]
    steps: list[Step]
    w16: np.ndarray  # fp16 weights (uint16 bits on the GPU; as fp32 in the host build)
    f32: np.ndarray  # fp32 constants
    views: dict[str, str] = field(default_factory=dict)  # a reshape's name → the tensor it views
    offsets: dict[str, int] = field(default_factory=dict)  # tensor → arena offset (floats)
    arena_floats: int = 0

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    def base(self, name: str) -> str:
        while name in self.views:
            name = self.views[name]
        return name

    def offset(self, name: str) -> int:
        return self.offsets[self.base(name)]

    def size(self, name: str) -> int:
        return int(np.prod(self.shapes[name]))

    def assign_buffers(self) -> None:
        """First-fit places in the arena (floats, 64-byte aligned) by live range."""
        fixed = [self.input] + [self.base(o) for o in self.outputs]
        last_use: dict[str, int] = {}
        for i, st in enumerate(self.steps):
            for name in (st.x, st.r, st.s):
                if name is not None:
                    last_use[self.base(name)] = i
        offsets: dict[str, int] = {}
        end = 0
        for name in dict.fromkeys(fixed):
            offsets[name] = end
            end += _aligned(self.size(name))
        live: list[tuple[int, int, str]] = []  # (start, end, tensor) of the shared region
        shared_from = end
        top = end
        for i, st in enumerate(self.steps):
            live = [t for t in live if last_use.get(t[2], -1) >= i]
            y = self.base(st.y)
            if y in offsets:
                continue
            need = _aligned(self.size(y))
            start = shared_from
            for a, b, _ in sorted(live):
                if start + need <= a:
                    break
                start = max(start, b)
            offsets[y] = start
            live.append((start, start + need, y))
            top = max(top, start + need)
        self.offsets, self.arena_floats = offsets, top

    def layers(self) -> list[tuple[str, str, int]]:
        """(kernel, the ONNX nodes it runs, multiply-adds) per step, for logs and benchmarks."""
        return [(st.kernel, st.what, st.macs) for st in self.steps]


def _aligned(floats: int) -> int:
    return -(-floats // 16) * 16
