"""Bringing a low-resolution result back to full resolution along the full-resolution frame's
edges (the GAN effect's reduced internal size)."""

from __future__ import annotations

import cv2
import numpy as np

from engine.ops.cpu import box_mean_into


class GuidedUpsampler:
    """A low-resolution result brought to full resolution along the full-resolution frame's edges.

    The fast guided filter (He & Sun, "Fast Guided Filter", 2015), self-guided per plane: at the
    low resolution, the result ``q`` is fitted locally as ``a·I + b`` of the frame ``I`` scaled to
    the same size (box windows of ``radius``, regularised by ``eps`` on the 0–255 scale); ``a``
    and ``b`` are upsampled bilinearly and applied to the full-resolution frame. Edges and fine
    texture come from the frame itself, the generator's colours and shapes from ``q``. Buffers
    are made once per pair of sizes.
    """

    def __init__(self, radius: int = 2, eps: float = 4.0) -> None:
        self.radius = radius
        self.eps = np.float32(eps)
        self._low: dict[tuple[int, int], list[np.ndarray]] = {}
        self._full: dict[tuple[int, int], list[np.ndarray]] = {}

    def __call__(
        self, low_in: np.ndarray, low_out: np.ndarray, full_in: np.ndarray, dst: np.ndarray
    ) -> None:
        """``low_in``/``low_out``: uint8 planes of one size (the frame scaled down, and the
        generator's result); ``full_in``/``dst``: uint8 planes of the full size."""
        h, w = low_in.shape
        t = self._low.get((w, h))
        if t is None:
            t = self._low[(w, h)] = [np.empty((h, w), np.float32) for _ in range(6)]
        i, q, mi, mq, a, b = t
        np.copyto(i, low_in, casting="unsafe")
        np.copyto(q, low_out, casting="unsafe")
        r = self.radius
        box_mean_into(i, r, mi)
        box_mean_into(q, r, mq)
        np.multiply(i, q, out=a)
        box_mean_into(a, r, a)  # mean of I·q
        np.multiply(i, i, out=b)
        box_mean_into(b, r, b)  # mean of I²
        np.multiply(mi, mq, out=q)
        np.subtract(a, q, out=a)  # cov(I, q)
        np.multiply(mi, mi, out=i)
        np.subtract(b, i, out=b)  # var(I)
        b += self.eps
        np.divide(a, b, out=a)
        np.multiply(a, mi, out=b)
        np.subtract(mq, b, out=b)
        fh, fw = full_in.shape
        f = self._full.get((fw, fh))
        if f is None:
            f = self._full[(fw, fh)] = [np.empty((fh, fw), np.float32) for _ in range(2)]
        big_a, big_b = f
        cv2.resize(a, (fw, fh), dst=big_a, interpolation=cv2.INTER_LINEAR)
        cv2.resize(b, (fw, fh), dst=big_b, interpolation=cv2.INTER_LINEAR)
        cv2.multiply(big_a, full_in, dst=big_a, dtype=cv2.CV_32F)
        cv2.add(big_a, big_b, dst=dst, dtype=cv2.CV_8U)  # rounded and saturated to 0..255
