"""Fast CPU image ops: OpenCV and NumPy, writing into buffers the caller owns.

Same conventions as ``engine.ops.reference`` (which the tests hold these to); the difference is
that nothing here allocates per frame once its scratch buffers exist for a given frame size.
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.frame import FrameBuffer, chroma_size
from engine.ops.color import rgb_to_yuv, yuv_to_rgb


def resize_into(src: np.ndarray, dst: np.ndarray) -> None:
    """Resample a 2-D uint8/float32 plane into ``dst`` (area when shrinking, bilinear growing)."""
    sh, sw = src.shape
    dh, dw = dst.shape
    if dh <= sh and dw <= sw:
        cv2.resize(src, (dw, dh), dst=dst, interpolation=cv2.INTER_AREA)
    elif dh >= sh and dw >= sw:
        cv2.resize(src, (dw, dh), dst=dst, interpolation=cv2.INTER_LINEAR)
    else:  # one axis shrinks, the other grows: one pass per axis (rare: extreme aspect ratios)
        mid = cv2.resize(
            src, (sw, dh), interpolation=cv2.INTER_AREA if dh < sh else cv2.INTER_LINEAR
        )
        cv2.resize(
            mid, (dw, dh), dst=dst, interpolation=cv2.INTER_AREA if dw < sw else cv2.INTER_LINEAR
        )


class Preprocessor:
    """yuv420p frame → float32 NCHW model input, RGB in [0, 1].

    Resamples the three planes to the model size first (uint8, OpenCV), then applies the colour
    matrix at model resolution only: a full-resolution RGB frame never exists.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._small = np.empty((3, height, width), np.uint8)
        self._yuv = np.empty((3, height * width), np.float32)

    def __call__(self, frame: FrameBuffer, out: np.ndarray) -> None:
        """Write the model input for ``frame`` into ``out`` (shape (3, H, W) or (1, 3, H, W))."""
        for plane, small in zip((frame.y, frame.u, frame.v), self._small, strict=True):
            resize_into(plane, small)
        mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
        np.subtract(
            self._small.reshape(3, -1),
            offset.astype(np.float32)[:, None],
            out=self._yuv,
            casting="unsafe",
        )
        flat = out.reshape(3, -1)
        np.matmul(mat.astype(np.float32), self._yuv, out=flat)
        np.clip(flat, 0.0, 1.0, out=flat)


class MaskUpsampler:
    """Low-resolution float matte → uint8 matte at frame size (0 = background, 255 = person)."""

    def __init__(self) -> None:
        self._scaled = np.empty((0, 0), np.float32)
        self._small = np.empty((0, 0), np.uint8)

    def __call__(self, mask: np.ndarray, out: np.ndarray) -> None:
        if self._small.shape != mask.shape:
            self._scaled = np.empty(mask.shape, np.float32)
            self._small = np.empty(mask.shape, np.uint8)
        # Quantise at low resolution (cheap), then resample uint8 straight into the output.
        np.multiply(mask, 255.0, out=self._scaled)
        np.clip(self._scaled, 0.0, 255.0, out=self._scaled)
        np.rint(self._scaled, out=self._scaled)
        self._small[...] = self._scaled
        resize_into(self._small, out)


def matte_to_yuv420p(alpha: np.ndarray, out: FrameBuffer) -> None:
    """Write a grey frame showing the uint8 matte into ``out`` (in ``out``'s range)."""
    if out.full_range:
        np.copyto(out.y, alpha)
    else:
        # 16 + a·219/255 through a lookup table: exact, and no float frame.
        cv2.LUT(alpha, _LIMITED_LUT, dst=out.y)
    out.u.fill(128)
    out.v.fill(128)


_LIMITED_LUT = np.rint(16.0 + np.arange(256) * (219.0 / 255.0)).astype(np.uint8)


def rgb_to_yuv420p(
    rgb: np.ndarray, *, colorspace: str = "bt601", full_range: bool = True
) -> FrameBuffer:
    """uint8 (H, W, 3) RGB → yuv420p (images and backgrounds at the edge, not per frame)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
    mat, offset = rgb_to_yuv(colorspace, full_range)
    m = mat.astype(np.float32)
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    y = x @ m[0] + np.float32(offset[0])
    cw, ch = chroma_size(w, h)
    if (2 * ch, 2 * cw) != (h, w):
        x = np.pad(x, ((0, 2 * ch - h), (0, 2 * cw - w), (0, 0)), mode="edge")
    blocks = x.reshape(ch, 2, cw, 2, 3).mean(axis=(1, 3))
    uv = blocks @ m[1:].T + offset[1:].astype(np.float32)

    def q(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return FrameBuffer(
        q(y), q(uv[..., 0]), q(uv[..., 1]), colorspace=colorspace, full_range=full_range
    )


def yuv420p_to_rgb(frame: FrameBuffer) -> np.ndarray:
    """yuv420p → uint8 (H, W, 3) RGB, chroma by pixel replication (edge use, not per frame)."""
    mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
    h, w = frame.height, frame.width
    cw, ch = chroma_size(w, h)
    u = cv2.resize(frame.u, (2 * cw, 2 * ch), interpolation=cv2.INTER_NEAREST)[:h, :w]
    v = cv2.resize(frame.v, (2 * cw, 2 * ch), interpolation=cv2.INTER_NEAREST)[:h, :w]
    yuv = np.stack([frame.y, u, v], axis=-1).astype(np.float32) - offset.astype(np.float32)
    rgb = yuv @ (mat.astype(np.float32).T * np.float32(255.0))
    out: np.ndarray = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out
