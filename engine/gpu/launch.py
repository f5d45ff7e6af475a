"""What a launch of our kernels is made of: launch shapes, the structs passed by value, the
argument conversion, and ``Op``, one launch (or copy) of a frame's sequence.

Nothing here calls CUDA: the values are plain ctypes and tuples, read by ``Module.launch``
(``engine.gpu.module``) and by the ops of ``engine.gpu.chain``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.ops.color import yuv_to_rgb

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


def _arg(value: Any) -> Any:
    """A kernel argument as ctypes: c_void_p for pointers, int → int, float → float, ctypes
    values (and structs) as they are."""
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


@dataclass
class Op:
    """One launch (or copy) of a frame's sequence: its name and the bytes it must move at the
    least (each input read once, each output written once)."""

    name: str
    nbytes: int
    run: Callable[[], None]
