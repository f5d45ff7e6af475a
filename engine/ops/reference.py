"""Reference image ops: plain NumPy float64, obvious and slow on purpose.

This module is the truth the fast backends (``cpu``, and later ``cuda``) are tested against. Every
function allocates its result and does the arithmetic in float64, in the most direct way.

Resampling convention (shared by every backend): separable; along an axis that shrinks, exact area
averaging (each output sample is the mean of the input it covers, fractional pixels weighted by
overlap); along an axis that grows, bilinear with half-pixel centres, clamped at the border.
"""

from __future__ import annotations

import numpy as np

from engine.frame import FrameBuffer, chroma_size
from engine.ops.color import rgb_to_yuv, yuv_to_rgb


def resample_matrix(src: int, dst: int) -> np.ndarray:
    """dst×src weights: area averaging when shrinking, half-pixel bilinear when growing."""
    w = np.zeros((dst, src))
    if dst <= src:
        scale = src / dst
        for i in range(dst):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), src)):
                w[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
    else:
        for i in range(dst):
            x = min(max((i + 0.5) * src / dst - 0.5, 0.0), src - 1)
            j0 = int(np.floor(x))
            j1 = min(j0 + 1, src - 1)
            f = x - j0
            w[i, j0] += 1.0 - f
            w[i, j1] += f
    return w


def resize(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample a 2-D plane (any dtype) to height×width, float64."""
    rows = resample_matrix(plane.shape[0], height)
    cols = resample_matrix(plane.shape[1], width)
    out: np.ndarray = rows @ plane.astype(np.float64) @ cols.T
    return out


def preprocess(frame: FrameBuffer, width: int, height: int) -> np.ndarray:
    """yuv420p frame → model input: float64 (3, height, width) RGB in [0, 1].

    The planes are resampled to the model size first, then converted: the colour matrix is linear,
    so this equals converting at full resolution and then resampling (up to the final clip).
    """
    mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
    yuv = np.stack([resize(p, width, height) for p in (frame.y, frame.u, frame.v)])
    rgb = np.einsum("ij,jhw->ihw", mat, yuv - offset[:, None, None])
    out: np.ndarray = np.clip(rgb, 0.0, 1.0)
    return out


def upsample_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Low-resolution matte in [0, 1] → float64 height×width matte in [0, 1]."""
    out: np.ndarray = np.clip(resize(mask, width, height), 0.0, 1.0)
    return out


def rgb_to_yuv420p(
    rgb: np.ndarray, *, colorspace: str = "bt601", full_range: bool = True
) -> FrameBuffer:
    """uint8 (H, W, 3) RGB → yuv420p frame; chroma is the mean of each 2×2 block's RGB."""
    mat, offset = rgb_to_yuv(colorspace, full_range)
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float64) / 255.0
    y = np.einsum("ij,hwj->hwi", mat[:1], x)[..., 0] + offset[0]
    cw, ch = chroma_size(w, h)
    padded = np.pad(x, ((0, 2 * ch - h), (0, 2 * cw - w), (0, 0)), mode="edge")
    blocks = padded.reshape(ch, 2, cw, 2, 3).mean(axis=(1, 3))
    uv = np.einsum("ij,hwj->hwi", mat[1:], blocks) + offset[1:]

    def q(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return FrameBuffer(
        q(y), q(uv[..., 0]), q(uv[..., 1]), colorspace=colorspace, full_range=full_range
    )


def yuv420p_to_rgb(frame: FrameBuffer) -> np.ndarray:
    """yuv420p frame → uint8 (H, W, 3) RGB; chroma upsampled by pixel replication."""
    mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
    h, w = frame.height, frame.width
    u = np.repeat(np.repeat(frame.u, 2, axis=0), 2, axis=1)[:h, :w]
    v = np.repeat(np.repeat(frame.v, 2, axis=0), 2, axis=1)[:h, :w]
    yuv = np.stack([frame.y, u, v], axis=-1).astype(np.float64) - offset
    rgb = np.einsum("ij,hwj->hwi", mat, yuv)
    out: np.ndarray = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return out


def matte_to_yuv420p(alpha: np.ndarray, *, colorspace: str, full_range: bool) -> FrameBuffer:
    """uint8 matte (0 = background, 255 = person) → grey yuv420p frame showing it."""
    a = alpha.astype(np.float64)
    y = a if full_range else 16.0 + a * (219.0 / 255.0)
    cw, ch = chroma_size(alpha.shape[1], alpha.shape[0])
    grey = np.full((ch, cw), 128, np.uint8)
    return FrameBuffer(
        np.rint(y).astype(np.uint8), grey, grey.copy(), colorspace=colorspace, full_range=full_range
    )
