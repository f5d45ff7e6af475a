"""Colour conventions: Y'CbCr ↔ R'G'B' matrices for BT.601 and BT.709, limited and full range.

One definition, used by every backend: ``rgb = M @ (yuv - offset)`` gives R'G'B' in [0, 1] from
8-bit Y, U, V code values; ``yuv = Minv @ rgb + offset`` goes back.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from engine.errors import InputError

KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


@lru_cache(maxsize=8)
def yuv_to_rgb(colorspace: str, full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(M, offset): float64 3×3 matrix and 3-vector such that rgb01 = M @ (yuv - offset)."""
    if colorspace not in KR_KB:
        raise InputError(f"unknown colorspace {colorspace!r}; expected one of {sorted(KR_KB)}")
    kr, kb = KR_KB[colorspace]
    kg = 1.0 - kr - kb
    # R'G'B' from Y' in [0, 1] and Pb, Pr in [-0.5, 0.5].
    m = np.array(
        [
            [1.0, 0.0, 2.0 * (1.0 - kr)],
            [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
            [1.0, 2.0 * (1.0 - kb), 0.0],
        ]
    )
    if full_range:
        scale = np.array([1 / 255.0, 1 / 255.0, 1 / 255.0])
        offset = np.array([0.0, 128.0, 128.0])
    else:
        scale = np.array([1 / 219.0, 1 / 224.0, 1 / 224.0])
        offset = np.array([16.0, 128.0, 128.0])
    mat = m * scale[None, :]
    mat.setflags(write=False)
    offset.setflags(write=False)
    return mat, offset


@lru_cache(maxsize=8)
def rgb_to_yuv(colorspace: str, full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """(M, offset) such that yuv = M @ rgb01 + offset (code values, before rounding)."""
    mat, offset = yuv_to_rgb(colorspace, full_range)
    inv = np.linalg.inv(mat)
    inv.setflags(write=False)
    return inv, offset
