"""The cpu backend's fused passes: LiveFX's compiled loops, or OpenCV and NumPy standing in.

A plane's matte and background reach the composite as ``Rows``: a few rows already resampled to
the plane's width, and the plane's height. Each output row is a vertical lerp of two of those
rows (bilinear, half-pixel centres, clamped: ``reference.resize``'s convention when enlarging),
so nothing of the frame's size exists before the composite writes it:

- the matte: the model-size matte resampled across (``mask-height × plane-width``);
- the background: a pyramid level's rows (blur), the plane itself (``rows == height``: replace,
  the GAN's person region) or one row of a constant (colour).

With the compiled loops (``engine.ops._fused``, from kernels/cpu_fused.cpp, built by ``pip
install``), resampling across, the lerps and the blend are 8-bit fixed-point passes, the
refine stage and the masked blur one call each. Without them (no compiler at install, or
``LIVEFX_NATIVE=0``) OpenCV and NumPy do the same work in more passes: the same pictures within
a level or two (tests/test_fused.py holds both to the reference).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import cv2
import numpy as np

from engine.frame import FrameBuffer

ENV = "LIVEFX_NATIVE"  # "0": the OpenCV and NumPy passes even where the compiled loops exist
CHUNK = 32  # pixels per flag of an across row (kernels/cpu_fused.cpp's kChunk)


class _Native:
    """The library's entry points. Pointers travel as plain addresses, strides in bytes."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        p, i, s, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_ssize_t, ctypes.c_float
        signatures = {
            "lfx_across": [p, s, i, i, p, p, p, p, p, p, p, i, p, s, p],
            "lfx_composite": [i, i, p, s, p, s, p, p, p, p, p, s, p, p, p, p, s],
            "lfx_vlerp": [i, i, p, s, p, p, p, p, s],
            "lfx_box_mean": [p, p, p, i, i, i],
            "lfx_box_scratch": [i, i, i],
            "lfx_refine": [p, p, s, i, i, i, f, p, i, f, f, f, p, p, p, p, p],
            "lfx_blur_den": [p, p, p, i, i, i],
            "lfx_masked_blur": [p, s, p, p, i, i, i, p, s, p],
        }
        for name, args in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, None
            setattr(self, name[4:], fn)
        self.box_scratch.restype = ctypes.c_size_t

    across: Any
    composite: Any
    vlerp: Any
    box_mean: Any
    box_scratch: Any
    refine: Any
    blur_den: Any
    masked_blur: Any


def _load() -> tuple[_Native | None, str]:
    if os.environ.get(ENV, "1") == "0":
        return None, f"OpenCV/NumPy passes ({ENV}=0)"
    spec = importlib.util.find_spec("engine.ops._fused")
    if spec is None or not spec.origin:
        return None, "OpenCV/NumPy passes (LiveFX's compiled loops were not built at install)"
    try:
        return _Native(spec.origin), "LiveFX's compiled loops (engine.ops._fused)"
    except (OSError, AttributeError) as exc:
        return None, f"OpenCV/NumPy passes (engine.ops._fused did not load: {exc})"


NATIVE, REASON = _load()


def addr(a: np.ndarray) -> int:
    """The address of an array's first element."""
    return int(a.__array_interface__["data"][0])


# -- plans, made once per size ------------------------------------------------------------------


@dataclass(frozen=True)
class Taps:
    """Bilinear taps from ``src`` to ``dst`` samples: per output, two source indices and the
    second one's weight in 1/256 (``reference.bilinear_matrix``'s, quantised)."""

    j0: np.ndarray  # int32
    j1: np.ndarray  # int32
    w: np.ndarray  # uint16, 0..256

    @cached_property
    def args(self) -> tuple[int, int, int]:
        """The three arrays' addresses, for the compiled loops."""
        return addr(self.j0), addr(self.j1), addr(self.w)


@cache
def taps(src: int, dst: int) -> Taps:
    i = np.arange(dst, dtype=np.float64)
    x = np.clip((i + 0.5) * src / dst - 0.5, 0.0, src - 1)
    j0 = np.floor(x).astype(np.int32)
    j1 = np.minimum(j0 + 1, src - 1).astype(np.int32)
    w = np.rint((x - j0) * 256.0).astype(np.uint16)
    return Taps(j0, j1, w)


@dataclass(frozen=True)
class AcrossPlan:
    """``taps(src, dst)`` (weights padded by 16 past the end) and, per group of ``group``
    outputs (16, or 8 when shrinking needs it), whether their sources lie in the 16 bytes from
    ``base`` (then one shuffle gathers them), with the indices relative to it, 16 per group."""

    taps: Taps
    group: int
    base: np.ndarray  # int32, one per group
    ok: np.ndarray  # uint8
    m0: np.ndarray  # uint8, 16 per group
    m1: np.ndarray  # uint8

    @cached_property
    def args(self) -> tuple[int, ...]:
        """What ``lfx_across`` takes of the plan, in its order."""
        arrays = (self.base, self.ok, self.m0, self.m1)
        return (*self.taps.args, *(addr(a) for a in arrays), self.group)


def _groups(t: Taps, src: int, dst: int, group: int) -> tuple[np.ndarray, ...]:
    n = dst // group
    j0 = t.j0[: n * group].reshape(n, group)
    j1 = t.j1[: n * group].reshape(n, group)
    base = np.minimum(j0[:, 0], max(src - 16, 0)).astype(np.int32)  # 16 bytes stay in the row
    ok = (src >= 16) & (j1.max(axis=1) - base < 16) & (j0.min(axis=1) >= base)
    pad = ((0, 0), (0, 16 - group))
    m0 = np.pad(np.where(ok[:, None], j0 - base[:, None], 0), pad).astype(np.uint8)
    m1 = np.pad(np.where(ok[:, None], j1 - base[:, None], 0), pad).astype(np.uint8)
    return base, ok.astype(np.uint8), m0.reshape(-1), m1.reshape(-1)


@cache
def across_plan(src: int, dst: int) -> AcrossPlan:
    t = taps(src, dst)
    t = Taps(t.j0, t.j1, np.concatenate([t.w, np.zeros(16, np.uint16)]))
    g16 = _groups(t, src, dst, 16)
    if not g16[1].all():  # 16 outputs span more than 16 sources somewhere (shrinking, ~1:1)
        g8 = _groups(t, src, dst, 8)
        if g8[1].mean() > g16[1].mean():
            return AcrossPlan(t, 8, *g8)
    return AcrossPlan(t, 16, *g16)


# -- full resolution ----------------------------------------------------------------------------


@dataclass
class Rows:
    """A plane of ``height`` rows given as ``rows`` (n ≤ height rows of the plane's width, uint8,
    lerped vertically); ``rows.shape[0] == height`` is the plane itself. ``flags``: per row and
    32 pixels, 0 where all are 0, 255 where all are 255, else 1 (a matte's, from ``across``)."""

    rows: np.ndarray
    height: int
    flags: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.rows.shape[1])

    @cached_property
    def args(self) -> tuple[int, int, int | None]:
        """The rows' address and row stride, and the flags' address, for the compiled loops."""
        flags = None if self.flags is None else addr(self.flags)
        return addr(self.rows), int(self.rows.strides[0]), flags


class AcrossRows:
    """Low-resolution uint8 planes resampled across to a plane's width, into buffers of its own
    (one set per source size): the cheap half of an upsampling, on the few rows there are. The
    ``Rows`` it returns are the same object for every call of one kind (their buffers are)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._rows: dict[tuple[int, int, bool, bool], Rows] = {}

    def __call__(self, src: np.ndarray, flags: bool = False) -> Rows:
        """``src`` (h ≤ height rows, w ≤ width, uint8) as ``Rows`` of this plane. Without the
        compiled loops, or where ``src`` is larger than the plane either way, the plane is
        resampled whole instead (``cpu.resize_into``: OpenCV does both directions in one call
        faster than across then down)."""
        h, w = src.shape
        whole = NATIVE is None or w > self.width or h > self.height
        flags = flags and not whole
        key = (w, h, whole, flags)
        rows = self._rows.get(key)
        if rows is None:
            n = self.height if whole else h
            flag_buf = np.empty((n, -(-self.width // CHUNK)), np.uint8) if flags else None
            rows = self._rows[key] = Rows(
                np.empty((n, self.width), np.uint8), self.height, flag_buf
            )
        if whole or NATIVE is None:  # (the second for the type checker)
            from engine.ops import cpu

            cpu.resize_into(src, rows.rows)
            return rows
        out, stride, flag_addr = rows.args
        NATIVE.across(
            addr(src),
            src.strides[0],
            h,
            self.width,
            *across_plan(w, self.width).args,
            out,
            stride,
            flag_addr,
        )
        return rows


Background = tuple[Rows, Rows, Rows]  # Y, U, V


def as_rows(bg: FrameBuffer | Background) -> Background:
    """A background as rows: a frame's planes stand for themselves."""
    if isinstance(bg, FrameBuffer):
        return Rows(bg.y, bg.height), Rows(bg.u, bg.u.shape[0]), Rows(bg.v, bg.v.shape[0])
    return bg


def constant_rows(width: int, height: int, value: int) -> Rows:
    """A plane of one value, as one row."""
    return Rows(np.full((1, width), value, np.uint8), height)


def expand(src: Rows, out: np.ndarray) -> None:
    """The plane ``src`` stands for, written into ``out`` (uint8, ``src.height × src.width``)."""
    rows = src.rows
    if rows.shape[0] == src.height:
        np.copyto(out, rows)
        return
    if NATIVE is None:
        cv2.resize(rows, (src.width, src.height), dst=out, interpolation=cv2.INTER_LINEAR)
        return
    ptr, stride, _ = src.args
    NATIVE.vlerp(
        src.width,
        src.height,
        ptr,
        stride,
        *taps(rows.shape[0], src.height).args,
        addr(out),
        out.strides[0],
    )


class Compositor:
    """out = fg·α + bg·(1 − α) on one plane, α and bg given as ``Rows``. Without the compiled
    loops both are expanded to full planes (buffers kept per size) and blended by OpenCV."""

    def __init__(self) -> None:
        self._planes: dict[tuple[int, int], list[np.ndarray]] = {}

    def __call__(self, fg: np.ndarray, bg: Rows, alpha: Rows, out: np.ndarray) -> None:
        h, w = fg.shape
        if (bg.width, bg.height) != (w, h) or (alpha.width, alpha.height) != (w, h):
            raise ValueError(
                f"composite: plane {w}×{h}, background {bg.width}×{bg.height}, "
                f"matte {alpha.width}×{alpha.height}"
            )
        if NATIVE is None:
            self._opencv(fg, bg, alpha, out)
            return
        a_ptr, a_stride, a_flags = alpha.args
        b_ptr, b_stride, _ = bg.args
        NATIVE.composite(
            w,
            h,
            addr(fg),
            fg.strides[0],
            a_ptr,
            a_stride,
            a_flags,
            *taps(alpha.rows.shape[0], h).args,
            b_ptr,
            b_stride,
            *taps(bg.rows.shape[0], h).args,
            addr(out),
            out.strides[0],
        )

    def _opencv(self, fg: np.ndarray, bg: Rows, alpha: Rows, out: np.ndarray) -> None:
        from engine.ops import cpu

        h, w = fg.shape
        bufs = self._planes.get((w, h))
        if bufs is None:
            bufs = self._planes[(w, h)] = [np.empty((h, w), np.uint8) for _ in range(4)]
        a_full, b_full, t1, t2 = bufs
        planes = []
        for src, full in ((alpha, a_full), (bg, b_full)):
            if src.rows.shape[0] == h:
                planes.append(src.rows)
            else:
                expand(src, full)
                planes.append(full)
        cpu.composite_into(fg, planes[1], planes[0], out, [t1, t2])


# -- matte resolution ---------------------------------------------------------------------------


class Scratch:
    """A float32 scratch array of at least ``n`` elements, grown when asked for more."""

    def __init__(self) -> None:
        self._a = np.empty(0, np.float32)

    def get(self, n: int) -> np.ndarray:
        if self._a.size < n:
            self._a = np.empty(n, np.float32)
        return self._a


def box_scratch(w: int, h: int, radius: int) -> int:
    """Floats of scratch the compiled box mean of a w × h plane needs."""
    assert NATIVE is not None
    return int(NATIVE.box_scratch(w, h, radius))


def box_mean_into(src: np.ndarray, radius: int, dst: np.ndarray, scratch: Scratch) -> None:
    """``reference.box_mean`` of a contiguous float32 plane into ``dst`` (compiled loops only)."""
    assert NATIVE is not None
    h, w = src.shape
    buf = scratch.get(box_scratch(w, h, radius))
    NATIVE.box_mean(addr(src), addr(dst), addr(buf), w, h, radius)
